//! The supervisor's decisions, as a sans-IO state machine: events and the current time go
//! in, actions come out.
//!
//! Call order (as in quinn-proto): [`Machine::handle`] for each event and
//! [`Machine::handle_timeout`] when [`Machine::next_deadline`] has passed, then drain
//! [`Machine::poll_action`] until it returns `None` and carry each action out. Some actions
//! have an immediate result that the driver feeds straight back as an event (`Spawn` →
//! `ChildSpawned`/`SpawnFailed`, `SwitchCurrent` → `CurrentSwitched`).
//!
//! This module never touches the file system, processes, threads, channels or the clock:
//! every instant comes in as an argument, so the tests below run a whole upgrade in
//! microseconds without a process or a sleep.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::backup::Report;
use crate::config::backup::Backup;
use crate::config::hooks::HookKind;
use crate::config::run_config::{Binary, RunConfig};
use crate::config::{Config, LogLevel};
use crate::home;
use crate::node::client::UpgradeStatus;
use crate::node::commands::{latest_segment_args, with_flag, SNAPSHOT_FLAG};
use crate::node::fingerprint::{CheckedFolder, Fingerprint};
pub use backup::{
    BackupDone, BackupOrder, BackupStatus, LastBackup, RunningBackupStatus, BACKUP_RETRY,
};
pub use phase::Phase;
use phase::{AfterStop, Running, StartKind, State};
use timer::{Timer, TimerTable};

/// One connection retry stands for two seconds of wall-clock budget (Vega's fixed poll), so
/// the budgets keep their meaning whatever the poll interval: N retries give the core N × 2 s.
pub const CONNECT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// How often a pending upgrade whose folder is not ready is warned about.
pub const FOLDER_WARN_PERIOD: Duration = Duration::from_secs(60);
/// How often the missing folder is logged as an error while the binaries wait for it.
pub const FOLDER_ERROR_PERIOD: Duration = Duration::from_secs(10);
/// How often a not-ready folder is checked again while the old version still runs.
pub const FOLDER_RECHECK_PENDING: Duration = Duration::from_secs(10);
/// How often a not-ready folder is checked again while the binaries are stopped for it.
pub const FOLDER_RECHECK_WAITING: Duration = Duration::from_secs(1);
/// How long after a failed switch of `current` it is tried again.
pub const SWITCH_RETRY: Duration = Duration::from_secs(10);
/// The first wait after a failed install; it doubles with every failure up to
/// [`INSTALL_BACKOFF_MAX`].
pub const INSTALL_BACKOFF: Duration = Duration::from_secs(15);
pub const INSTALL_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Install attempts while the release is only accepted (prefetch); at the upgrade block
/// Visor tries again at once and then keeps retrying with the capped backoff.
pub const PREFETCH_ATTEMPTS: u32 = 4;
/// While the old version runs, two installs start at least this far apart, whatever the
/// tags: a core that flips its answer cannot make Visor hammer the release server.
pub const INSTALL_SPACING: Duration = Duration::from_secs(15);
/// How many release tags' install attempts are remembered; the oldest is forgotten first.
pub const REMEMBERED_TAGS: usize = 256;
/// How often the process group of an exited node process is looked at while members of it
/// still run.
pub const GROUP_PROBE_PERIOD: Duration = Duration::from_millis(50);

/// The supervised processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    Core,
    DataNode,
}

impl Proc {
    pub fn name(self) -> &'static str {
        match self {
            Proc::Core => "core",
            Proc::DataNode => "data node",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Signals Visor receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivedSignal {
    Term,
    Int,
    Hup,
}

/// Signals Visor sends to a child's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

/// Where and how often the RPC thread polls the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polling {
    /// Results carry the generation they were asked under; older ones are dropped.
    pub generation: u64,
    pub socket: PathBuf,
    pub http_path: String,
    pub interval: Duration,
}

/// Inputs: facts, in the past tense.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Visor has set up its threads; start the binaries of `current`.
    Started,
    ChildSpawned {
        proc: Proc,
        pid: u32,
    },
    SpawnFailed {
        proc: Proc,
        error: String,
    },
    ChildExited {
        proc: Proc,
        pid: u32,
        status: String,
    },
    SignalReceived(ReceivedSignal),
    StatusPolled {
        generation: u64,
        result: Result<UpgradeStatus, String>,
    },
    ConfigReloaded(Result<Box<Config>, Vec<String>>),
    /// A read of config.toml after SIGHUP found the content last read and accepted.
    ConfigUnchanged,
    SegmentQueried(Result<Option<u64>, String>),
    /// The upgrade folder of `tag` was checked: its run-config parsed, its binaries exist and
    /// report `tag` as their version; or the reason it is not ready.
    FolderChecked {
        tag: String,
        /// The folder does not exist at all (so an install may create it).
        missing: bool,
        result: Result<Box<CheckedFolder>, String>,
    },
    /// An auto-install of `tag` ended (or was cancelled): the installed folder, version
    /// checked, or why it failed.
    InstallFinished {
        tag: String,
        result: Result<Box<CheckedFolder>, String>,
    },
    CurrentSwitched(Result<(), SwitchError>),
    /// What a [`Action::ProbeGroups`] found: the probed process groups that still have live
    /// members, and the descendants of the probed node processes outside their groups.
    GroupsProbed {
        alive: Vec<u32>,
        strays: Vec<Stray>,
    },
    /// An operator asked through the control socket (`visor restart`, `visor switch`); the
    /// answers go back as [`Action::ControlReply`] with the same `id`.
    ControlReceived {
        id: u64,
        request: ControlRequest,
    },
    /// The folder of an operator's `switch` was checked.
    SwitchFolderChecked {
        tag: String,
        result: Result<Box<CheckedFolder>, String>,
    },
    /// The run-config of `current` was read again for an operator's `restart` (parsed, its
    /// binaries usable), or why it cannot be used.
    RunConfigRead(Result<Box<RunConfig>, String>),
    /// A hook ended: success, or how it failed (its exit status, a time-out).
    HookFinished {
        id: u64,
        kind: HookKind,
        result: Result<(), String>,
    },
    /// The backup `id` reports how far it is (every 5 s).
    BackupProgress {
        id: u64,
        report: Report,
    },
    /// The backup `id` ended: completed, or why not (its half-made folder is removed, or
    /// the message says it could not be). A cancelled backup reports too.
    BackupFinished {
        id: u64,
        result: Result<Box<BackupDone>, String>,
    },
    /// The check `id` of `[backup]` (`backup::validate`, as Visor sees the file system)
    /// found these problems (one message each, naming key, path and fix), and what a backup
    /// will cost, when it could tell.
    BackupChecked {
        id: u64,
        problems: Vec<String>,
        cost: Option<String>,
    },
    /// The hook run `id` was started as process `pid` (the leader of its own group), so
    /// `status.json` can name it.
    HookStarted {
        id: u64,
        pid: u32,
    },
}

/// A descendant of a node process outside its process group (it called `setsid`, or its
/// parent exited and it was re-parented to Visor), found by a probe: a signal to the group
/// misses it, so it is signalled by pid, identified by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stray {
    pub pid: u32,
    /// Clock ticks after boot, as `/proc/PID/stat` gives it.
    pub start_time: u64,
    /// The process group (the node process) it descends from.
    pub tree: u32,
}

/// What an operator can ask a running Visor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// Stop the binaries and start them again from `current`.
    Restart,
    /// Move to the release `tag` (a patch release: no upgrade block, no snapshot height).
    Switch { tag: String },
}

/// Visor's answer to a control request: progress lines, then one final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    Progress(String),
    /// Done: the new start answers RPC.
    Done(String),
    /// Nothing was changed.
    Refused(String),
    /// The request was carried out in part and failed; the message says what runs now.
    Failed(String),
}

impl ControlReply {
    pub fn is_final(&self) -> bool {
        !matches!(self, ControlReply::Progress(_))
    }
}

/// Why `current` was not switched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchError {
    /// The folder is no longer the one that was checked (removed, a binary replaced...).
    FolderChanged(String),
    /// The link could not be replaced.
    Failed(String),
}

/// Outputs: orders, carried out by the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Log {
        level: LogLevel,
        msg: String,
        fields: Vec<(&'static str, String)>,
    },
    Spawn {
        proc: Proc,
        program: PathBuf,
        args: Vec<String>,
    },
    Signal {
        proc: Proc,
        pid: u32,
        signal: StopSignal,
    },
    /// Start, retarget or (with `None`) pause the RPC polling thread.
    Poll(Option<Polling>),
    /// Read config.toml now (SIGHUP).
    ReloadConfig,
    QuerySegment {
        program: PathBuf,
        args: Vec<String>,
    },
    CheckFolder {
        tag: String,
        folder: PathBuf,
    },
    /// Install release `tag` into `folder` from GitHub, deriving its run-config from
    /// `template` (the running version's).
    StartInstall {
        tag: String,
        folder: PathBuf,
        template: Box<RunConfig>,
    },
    /// Stop the running install of `tag` (it cleans up and reports `InstallFinished`).
    CancelInstall {
        tag: String,
    },
    /// Move `current` to `folder` if it is still as `expect` recorded; else report
    /// [`SwitchError::FolderChanged`] and change nothing.
    SwitchCurrent {
        folder: PathBuf,
        expect: Box<Fingerprint>,
    },
    /// Signal the process group `pgid` of a node process that has exited; sent only while a
    /// probe has found members in it.
    SignalGroup {
        pgid: u32,
        signal: StopSignal,
    },
    /// Look whether these process groups (of node processes Visor started) still have live
    /// members, and which of their descendants run outside them; answered at once with
    /// [`Event::GroupsProbed`].
    ProbeGroups(Vec<u32>),
    /// Signal one descendant outside its group, only while it is still the process a probe
    /// found (the same start time).
    SignalProcess {
        pid: u32,
        start_time: u64,
        signal: StopSignal,
    },
    /// Check the folder an operator asked to switch to; answered with
    /// [`Event::SwitchFolderChecked`].
    CheckSwitchFolder {
        tag: String,
        folder: PathBuf,
    },
    /// Read `folder/run-config.toml` again and check its binaries; answered with
    /// [`Event::RunConfigRead`].
    ReadRunConfig {
        folder: PathBuf,
    },
    /// Run an operator's hook on a thread of its own; answered with [`Event::HookFinished`].
    RunHook {
        id: u64,
        kind: HookKind,
        command: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
    },
    ControlReply {
        id: u64,
        reply: ControlReply,
    },
    /// Note in HOME that the binaries are being replaced by `tag` from block `height`, so a
    /// Visor restarted before the new version answers still starts it from the snapshot.
    MarkUpgrade {
        tag: String,
        height: u64,
    },
    /// The new version answered: the note is no longer needed.
    ClearUpgradeMark,
    /// Take a backup on a worker of its own; it reports [`Event::BackupProgress`] and
    /// [`Event::BackupFinished`].
    StartBackup {
        id: u64,
        order: Box<BackupOrder>,
    },
    /// Stop the backup `id` (it removes its half-made folder and reports
    /// [`Event::BackupFinished`]).
    CancelBackup {
        id: u64,
    },
    /// Check `settings` (`backup::validate`) on a worker; answered with
    /// [`Event::BackupChecked`].
    CheckBackup {
        id: u64,
        settings: Box<Backup>,
        upgrade_folders: BTreeMap<String, String>,
    },
    Exit(i32),
}

#[derive(Debug, Clone, PartialEq)]
enum FolderState {
    Checking,
    Installing,
    Ready(Box<CheckedFolder>),
    NotReady(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Pending {
    tag: String,
    height: u64,
    folder: PathBuf,
    state: FolderState,
    last_complaint: Option<Instant>,
    /// The backup at the upgrade block, before `beforeSwitch`.
    backup: backup::BackupGate,
    /// The `beforeSwitch` hook at the upgrade block.
    gate: hooks::GateState,
}

/// What Visor remembers about installing one release tag, for the life of the run, so a core
/// that flips its answer cannot reset the attempts or the backoff.
#[derive(Debug, Clone, Default, PartialEq)]
struct InstallRecord {
    attempts: u32,
    next_at: Option<Instant>,
}

/// The one install worker that may run.
#[derive(Debug, Clone, PartialEq)]
struct RunningInstall {
    tag: String,
    cancelled: bool,
}

/// The process group of a node process that has exited, while members of it may still run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Lingering {
    pgid: u32,
    termed: bool,
}

/// The last error logged and when; `resolved_at` once what it reported was seen gone: a good
/// reload for a `config:` error, the pending folder found ready for an `upgrade:` error, the
/// core's first answer after a start for any error but a `config:` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub message: String,
    pub at: Instant,
    pub resolved_at: Option<Instant>,
}

/// The supervisor's state. See the module documentation for the call order.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    home: PathBuf,
    run: RunConfig,
    /// The release the running binaries belong to: the run-config name at start, the tag
    /// after an upgrade.
    running_release: String,
    state: State,
    signalled: bool,
    children: [Option<u32>; 2],
    restarts: u64,
    poll_generation: u64,
    pending: Option<Pending>,
    /// Install attempts per tag, oldest first in `install_order`.
    installs: BTreeMap<String, InstallRecord>,
    install_order: VecDeque<String>,
    install_running: Option<RunningInstall>,
    last_install_start: Option<Instant>,
    /// One folder check runs at a time; a request while it runs is queued (at most one).
    check_running: bool,
    check_queued: bool,
    lingering: Vec<Lingering>,
    /// Descendants of the node processes outside their groups, found by the last probes, and
    /// whether each got SIGTERM.
    strays: Vec<(Stray, bool)>,
    /// The operator's request being carried out (one at a time).
    control: Option<control::ControlJob>,
    /// The last error logged, and a config.toml reload that was refused (cleared by a good one).
    last_error: Option<LastError>,
    refused_reload: Option<String>,
    /// The operator's hooks: running, their last outcomes, `onAccepted` already run.
    hooks: hooks::HookBook,
    /// The release that ran before the last upgrade, for `afterUpgrade`.
    previous_release: String,
    /// The `afterUpgrade` due at the first answer of the version an upgrade or a switch
    /// started.
    after_start: Option<hooks::AfterHook>,
    /// The backups: the one running, the check of `[backup]`, the last outcome.
    backups: backup::BackupBook,
    /// The interval last given to the RPC thread.
    poll_interval: Option<Duration>,
    refused_tag: Option<String>,
    warned_ready_running: bool,
    upgrades: u64,
    restarts_total: u64,
    /// `restarts_total` by the process whose exit (or failed start) caused the restart.
    restarts_by_proc: [u64; 2],
    /// Failed installs of the pending release since Visor started.
    install_failures: u64,
    /// When config.toml was last read and accepted after a change or SIGHUP.
    last_reload: Option<Instant>,
    /// The upgrade height while the version it started has not answered yet: every start
    /// until then (a crash restart, or Visor's own restart) is still the first start after
    /// the upgrade and gets the snapshot flag.
    first_start_height: Option<u64>,
    upgrade_began: Option<Instant>,
    last_upgrade_downtime: Option<Duration>,
    /// The instant of the event or time-out being handled, for what is logged during it.
    turn_at: Option<Instant>,
    timers: TimerTable,
    actions: VecDeque<Action>,
}

impl Machine {
    pub fn new(config: Config, home: PathBuf, run: RunConfig) -> Machine {
        let running_release = run.name.clone();
        Machine {
            config,
            home,
            run,
            running_release,
            state: State::Idle,
            signalled: false,
            children: [None, None],
            restarts: 0,
            poll_generation: 0,
            pending: None,
            installs: BTreeMap::new(),
            install_order: VecDeque::new(),
            install_running: None,
            last_install_start: None,
            check_running: false,
            check_queued: false,
            lingering: Vec::new(),
            strays: Vec::new(),
            control: None,
            last_error: None,
            refused_reload: None,
            hooks: hooks::HookBook::default(),
            previous_release: String::new(),
            after_start: None,
            backups: backup::BackupBook::default(),
            poll_interval: None,
            refused_tag: None,
            warned_ready_running: false,
            upgrades: 0,
            restarts_total: 0,
            restarts_by_proc: [0, 0],
            install_failures: 0,
            last_reload: None,
            first_start_height: None,
            upgrade_began: None,
            last_upgrade_downtime: None,
            turn_at: None,
            timers: TimerTable::default(),
            actions: VecDeque::new(),
        }
    }

    /// Visor restarts after switching `current` but before the new version answered (the
    /// upgrade marker in HOME names this release): its first start still loads the snapshot
    /// at the upgrade height.
    pub fn with_unfinished_upgrade(mut self, height: u64) -> Machine {
        self.first_start_height = Some(height);
        self
    }

    pub fn phase(&self) -> Phase {
        self.state.phase()
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
    pub fn upgrades(&self) -> u64 {
        self.upgrades
    }
    pub fn running_release(&self) -> &str {
        &self.running_release
    }
    pub fn child_pid(&self, proc: Proc) -> Option<u32> {
        self.children[proc.index()]
    }
    /// The pending release (tag, height, folder ready), if any.
    pub fn pending(&self) -> Option<(&str, u64, bool)> {
        self.pending.as_ref().map(|p| {
            (
                p.tag.as_str(),
                p.height,
                matches!(p.state, FolderState::Ready(_)),
            )
        })
    }

    /// The pending release in full: tag, height, folder and the folder's state in words
    /// (`checking`, `installing`, `ready`, or `not ready: WHY`).
    pub fn pending_detail(&self) -> Option<(&str, u64, &std::path::Path, String)> {
        self.pending.as_ref().map(|p| {
            let state = match &p.state {
                FolderState::Checking => "checking".to_string(),
                FolderState::Installing => "installing".to_string(),
                FolderState::Ready(_) => "ready".to_string(),
                FolderState::NotReady(why) => format!("not ready: {why}"),
            };
            (p.tag.as_str(), p.height, p.folder.as_path(), state)
        })
    }
    /// The folder of the running version (where its run-config.toml is).
    pub fn running_folder(&self) -> &std::path::Path {
        self.run.file.parent().unwrap_or(&self.home)
    }
    /// The last error Visor logged, when, and when its condition was seen gone.
    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }
    /// Why the last config.toml reload was refused, until a reload succeeds.
    pub fn refused_reload(&self) -> Option<&str> {
        self.refused_reload.as_deref()
    }
    /// Restarts since Visor started (the budget counter resets; this one does not).
    pub fn restarts_total(&self) -> u64 {
        self.restarts_total
    }
    /// The part of [`Machine::restarts_total`] caused by an unplanned exit or a failed start
    /// of `proc`; the parts add up to the total.
    pub fn restarts_of(&self, proc: Proc) -> u64 {
        self.restarts_by_proc[proc.index()]
    }
    /// Installs of the pending release that failed since Visor started (cancelled ones and
    /// those of a release no longer pending do not count).
    pub fn install_failures(&self) -> u64 {
        self.install_failures
    }
    /// When config.toml was last reloaded successfully (changed or not), if ever since start.
    pub fn last_reload(&self) -> Option<Instant> {
        self.last_reload
    }
    /// True while the core of the current start answers RPC: it has answered, and the last
    /// call since succeeded.
    pub fn core_rpc_up(&self) -> bool {
        self.running()
            .is_some_and(|r| r.answered && r.last_rpc_error.is_none())
    }
    /// True once the core of the current start has answered RPC.
    pub fn core_answered(&self) -> bool {
        self.running().is_some_and(|r| r.answered)
    }
    /// Whether a data node is configured for the running version.
    pub fn has_data_node(&self) -> bool {
        self.run.data_node.is_some()
    }
    /// From "core stopped at the upgrade block" to "new core answers RPC", for the last upgrade.
    pub fn last_upgrade_downtime(&self) -> Option<Duration> {
        self.last_upgrade_downtime
    }
    /// True while stopping in order to exit.
    pub fn exiting(&self) -> bool {
        match self.state {
            State::Stopping { then } => matches!(then, AfterStop::Exit(_)),
            State::Done => true,
            _ => false,
        }
    }

    /// One short line saying what Visor is doing, for systemd's STATUS= and `status`, then
    /// each hook whose last run failed (`; hook beforeSwitch failed: exit status 3`).
    pub fn status_line(&self) -> String {
        let mut line = self.phase_line();
        for (kind, why) in self.hook_failures() {
            line.push_str(&format!("; hook {} failed: {why}", kind.key()));
        }
        self.backup_status_suffix(&mut line);
        line
    }

    /// What Visor is doing, in a few words.
    fn phase_line(&self) -> String {
        let release = &self.running_release;
        let pending_tag = self.pending.as_ref().map(|p| p.tag.as_str()).unwrap_or("?");
        match self.phase() {
            Phase::Idle => "starting".into(),
            Phase::Running if !self.core_answered() => format!("starting {release}"),
            Phase::Running => match &self.pending {
                Some(p) => format!(
                    "running {release}; upgrade {} accepted at {}",
                    p.tag, p.height
                ),
                None => format!("running {release}"),
            },
            Phase::QueryingSegment
                if matches!(
                    self.state,
                    State::QueryingSegment {
                        kind: StartKind::Manual
                    }
                ) =>
            {
                format!("restarting {release} (operator request)")
            }
            Phase::QueryingSegment | Phase::RestartWait => {
                format!("restarting {}/{}", self.restarts, self.config.max_restarts)
            }
            Phase::Stopping => match self.stopping_then().unwrap_or(AfterStop::Exit(0)) {
                AfterStop::Exit(_) => "stopping".into(),
                AfterStop::Restart => {
                    format!("restarting {}/{}", self.restarts, self.config.max_restarts)
                }
                AfterStop::Upgrade => format!("upgrading to {pending_tag}: stopping {release}"),
                AfterStop::Manual => format!("restarting {release} (operator request)"),
                AfterStop::Switch => format!(
                    "switching to {}: stopping {release}",
                    self.switch_tag().unwrap_or("?")
                ),
            },
            Phase::SwitchWait => {
                let tag = self.switch_tag().unwrap_or("?");
                match self.backup_phase_words() {
                    Some(words) => format!("switching to {tag}: {words}"),
                    None => format!("switching to {tag}"),
                }
            }
            Phase::UpgradeWait => match self.pending.as_ref().map(|p| &p.state) {
                Some(FolderState::Installing) => format!("upgrading to {pending_tag}: installing"),
                Some(FolderState::NotReady(_)) => {
                    format!("upgrading to {pending_tag}: waiting for its folder")
                }
                _ => match self.backup_phase_words() {
                    Some(words) => format!("upgrading to {pending_tag}: {words}"),
                    None => format!("upgrading to {pending_tag}"),
                },
            },
            Phase::Done => "stopped".into(),
        }
    }

    /// The next action to carry out, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest instant at which [`Machine::handle_timeout`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Fires every timer whose deadline is at or before `now`. Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.turn_at = Some(now);
        while let Some(timer) = self.timers.expire(now) {
            self.on_timer(now, timer);
        }
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        self.turn_at = Some(now);
        match event {
            Event::Started => {
                if self.phase() == Phase::Idle {
                    self.start(now, StartKind::First);
                    self.request_backup_check(true);
                }
            }
            Event::ChildSpawned { proc, pid } => self.on_spawned(now, proc, pid),
            Event::SpawnFailed { proc, error } => {
                self.log(
                    LogLevel::Error,
                    format!("supervise: cannot start {}: {error}", proc.name()),
                    vec![],
                );
                if self.phase() == Phase::Running {
                    self.on_failure(now, proc);
                }
            }
            Event::ChildExited { proc, pid, status } => self.on_exited(now, proc, pid, status),
            Event::SignalReceived(signal) => self.on_signal(now, signal),
            Event::StatusPolled { generation, result } => {
                if generation == self.poll_generation && self.phase() == Phase::Running {
                    match result {
                        Ok(status) => self.on_status(now, status),
                        Err(error) => self.on_rpc_error(error),
                    }
                }
            }
            Event::ConfigReloaded(result) => self.on_config(now, result),
            Event::ConfigUnchanged => self.on_config_unchanged(now),
            Event::SegmentQueried(result) => {
                if let State::QueryingSegment { kind } = self.state {
                    let height = match result {
                        Ok(Some(height)) => Some(height),
                        Ok(None) => {
                            self.log(
                                LogLevel::Info,
                                "supervise: data node has no history segments; starting the core without a snapshot height".into(),
                                vec![],
                            );
                            None
                        }
                        Err(error) => {
                            self.log(
                                LogLevel::Warn,
                                format!("supervise: latest history segment unknown ({error}); starting the core without a snapshot height"),
                                vec![],
                            );
                            None
                        }
                    };
                    self.spawn_core(now, kind, height);
                }
            }
            Event::FolderChecked {
                tag,
                missing,
                result,
            } => self.on_folder_checked(now, tag, missing, result),
            Event::InstallFinished { tag, result } => self.on_install_finished(now, tag, result),
            Event::CurrentSwitched(result) => self.on_switched(now, result),
            Event::GroupsProbed { alive, strays } => self.on_groups_probed(now, alive, strays),
            Event::ControlReceived { id, request } => self.on_control(now, id, request),
            Event::SwitchFolderChecked { tag, result } => {
                self.on_switch_folder_checked(now, tag, result)
            }
            Event::RunConfigRead(result) => self.on_run_config_read(now, result),
            Event::HookFinished { id, kind, result } => {
                self.on_hook_finished(now, id, kind, result)
            }
            Event::HookStarted { id, pid } => self.on_hook_started(id, pid),
            Event::BackupProgress { id, report } => self.on_backup_progress(id, report),
            Event::BackupFinished { id, result } => self.on_backup_finished(now, id, result),
            Event::BackupChecked { id, problems, cost } => {
                self.on_backup_checked(now, id, problems, cost)
            }
        }
    }

    fn log(&mut self, level: LogLevel, msg: String, fields: Vec<(&'static str, String)>) {
        // Every line is logged while an event or a time-out is handled, at `turn_at`.
        if let (LogLevel::Error, Some(at)) = (level, self.turn_at) {
            self.last_error = Some(LastError {
                message: msg.clone(),
                at,
                resolved_at: None,
            });
        }
        self.actions.push_back(Action::Log { level, msg, fields });
    }

    /// Marks the last error resolved at `now` when `gone` says its condition is over.
    fn resolve_error(&mut self, now: Instant, gone: impl Fn(&str) -> bool) {
        if let Some(error) = &mut self.last_error {
            if error.resolved_at.is_none() && gone(&error.message) {
                error.resolved_at = Some(now);
            }
        }
    }

    fn set_timer(&mut self, timer: Timer, at: Instant) {
        self.timers.set(timer, at);
    }

    fn clear_timer(&mut self, timer: Timer) {
        self.timers.stop(timer);
    }

    fn live_children(&self) -> Vec<(Proc, u32)> {
        [Proc::Core, Proc::DataNode]
            .into_iter()
            .filter_map(|p| self.children[p.index()].map(|pid| (p, pid)))
            .collect()
    }
}

/// `now + delay`, saturating far in the future instead of overflowing the clock (a
/// configured delay is bounded, but a deadline must never be a panic).
fn later(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(delay.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

mod backup;
mod control;
mod hooks;
mod phase;
mod supervise;
#[cfg(test)]
mod tests;
mod timer;
mod upgrade;
