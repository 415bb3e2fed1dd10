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

use crate::config::run_config::{Binary, RunConfig};
use crate::config::{Config, LogLevel};
use crate::home;
use crate::home::fingerprint::{CheckedFolder, Fingerprint};
use crate::node::client::UpgradeStatus;
use crate::node::commands::{latest_segment_args, with_flag, SNAPSHOT_FLAG};

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
    /// The process groups of exited node processes that still have members.
    GroupsProbed {
        alive: Vec<u32>,
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
    /// Look whether these process groups still have live members; answered at once with
    /// [`Event::GroupsProbed`].
    ProbeGroups(Vec<u32>),
    /// Check the folder an operator asked to switch to; answered with
    /// [`Event::SwitchFolderChecked`].
    CheckSwitchFolder {
        tag: String,
        folder: PathBuf,
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
    Exit(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    StopDelay,
    Kill,
    RestartDelay,
    ConnectBudget,
    FolderRecheck,
    GroupProbe,
}
const TIMER_COUNT: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartKind {
    First,
    Restart,
    /// `visor restart`: as after a crash (latest history segment with a data node), with the
    /// first start's connection budget and no upgrade height.
    Manual,
    Upgrade {
        height: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    Exit(i32),
    Restart,
    Upgrade,
    /// `visor restart`.
    Manual,
    /// `visor switch`.
    Switch,
}

/// What the supervisor is doing; see ARCHITECTURE.md for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    /// Asking the data node for its latest history segment before a restart.
    QueryingSegment,
    Running,
    Stopping,
    /// Binaries stopped after a failure; waiting `restartsDelaySeconds`.
    RestartWait,
    /// Binaries stopped at the upgrade block; waiting for the new folder to be ready.
    UpgradeWait,
    /// Binaries stopped for an operator's `switch`; `current` is being moved.
    SwitchWait,
    Done,
}

impl Phase {
    /// The phase's name in `status.json` and `visor status`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "starting",
            Phase::QueryingSegment => "querying-segment",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::RestartWait => "restart-wait",
            Phase::UpgradeWait => "upgrade-wait",
            Phase::SwitchWait => "switch-wait",
            Phase::Done => "stopped",
        }
    }
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

/// The supervisor's state. See the module documentation for the call order.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    home: PathBuf,
    run: RunConfig,
    /// The release the running binaries belong to: the run-config name at start, the tag
    /// after an upgrade.
    running_release: String,
    phase: Phase,
    after_stop: AfterStop,
    start_kind: StartKind,
    signalled: bool,
    children: [Option<u32>; 2],
    restarts: u64,
    answered: bool,
    last_rpc_error: Option<String>,
    healthy_since: Option<Instant>,
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
    /// The operator's request being carried out (one at a time).
    control: Option<control::ControlJob>,
    /// The last error logged, and a config.toml reload that was refused (cleared by a good one).
    last_error: Option<String>,
    refused_reload: Option<String>,
    /// The interval last given to the RPC thread.
    poll_interval: Option<Duration>,
    refused_tag: Option<String>,
    warned_ready_running: bool,
    upgrades: u64,
    restarts_total: u64,
    /// The upgrade height while the version it started has not answered yet: every start
    /// until then (a crash restart, or Visor's own restart) is still the first start after
    /// the upgrade and gets the snapshot flag.
    first_start_height: Option<u64>,
    upgrade_began: Option<Instant>,
    last_upgrade_downtime: Option<Duration>,
    timers: [Option<Instant>; TIMER_COUNT],
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
            phase: Phase::Idle,
            after_stop: AfterStop::Exit(0),
            start_kind: StartKind::First,
            signalled: false,
            children: [None, None],
            restarts: 0,
            answered: false,
            last_rpc_error: None,
            healthy_since: None,
            poll_generation: 0,
            pending: None,
            installs: BTreeMap::new(),
            install_order: VecDeque::new(),
            install_running: None,
            last_install_start: None,
            check_running: false,
            check_queued: false,
            lingering: Vec::new(),
            control: None,
            last_error: None,
            refused_reload: None,
            poll_interval: None,
            refused_tag: None,
            warned_ready_running: false,
            upgrades: 0,
            restarts_total: 0,
            first_start_height: None,
            upgrade_began: None,
            last_upgrade_downtime: None,
            timers: [None; TIMER_COUNT],
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
        self.phase
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
    /// The last error Visor logged.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
    /// Why the last config.toml reload was refused, until a reload succeeds.
    pub fn refused_reload(&self) -> Option<&str> {
        self.refused_reload.as_deref()
    }
    /// Restarts since Visor started (the budget counter resets; this one does not).
    pub fn restarts_total(&self) -> u64 {
        self.restarts_total
    }
    /// True once the core of the current start has answered RPC.
    pub fn core_answered(&self) -> bool {
        self.answered
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
        matches!(self.phase, Phase::Stopping | Phase::Done)
            && matches!(self.after_stop, AfterStop::Exit(_))
    }

    /// One short line saying what Visor is doing, for systemd's STATUS= and `status`.
    pub fn status_line(&self) -> String {
        let release = &self.running_release;
        let pending_tag = self.pending.as_ref().map(|p| p.tag.as_str()).unwrap_or("?");
        match self.phase {
            Phase::Idle => "starting".into(),
            Phase::Running if !self.answered => format!("starting {release}"),
            Phase::Running => match &self.pending {
                Some(p) => format!(
                    "running {release}; upgrade {} accepted at {}",
                    p.tag, p.height
                ),
                None => format!("running {release}"),
            },
            Phase::QueryingSegment | Phase::RestartWait => {
                format!("restarting {}/{}", self.restarts, self.config.max_restarts)
            }
            Phase::Stopping => match self.after_stop {
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
            Phase::SwitchWait => format!("switching to {}", self.switch_tag().unwrap_or("?")),
            Phase::UpgradeWait => match self.pending.as_ref().map(|p| &p.state) {
                Some(FolderState::Installing) => format!("upgrading to {pending_tag}: installing"),
                Some(FolderState::NotReady(_)) => {
                    format!("upgrading to {pending_tag}: waiting for its folder")
                }
                _ => format!("upgrading to {pending_tag}"),
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
        self.timers.iter().flatten().min().copied()
    }

    /// Fires every timer whose deadline is at or before `now`. Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in [
            Timer::StopDelay,
            Timer::Kill,
            Timer::RestartDelay,
            Timer::ConnectBudget,
            Timer::FolderRecheck,
            Timer::GroupProbe,
        ] {
            match self.timers[timer as usize] {
                Some(deadline) if deadline <= now => {
                    self.timers[timer as usize] = None;
                    self.on_timer(now, timer);
                }
                _ => {}
            }
        }
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        match event {
            Event::Started => {
                if self.phase == Phase::Idle {
                    self.start(now, StartKind::First);
                }
            }
            Event::ChildSpawned { proc, pid } => self.on_spawned(now, proc, pid),
            Event::SpawnFailed { proc, error } => {
                self.log(
                    LogLevel::Error,
                    format!("supervise: cannot start {}: {error}", proc.name()),
                    vec![],
                );
                if self.phase == Phase::Running {
                    self.on_failure(now);
                }
            }
            Event::ChildExited { proc, pid, status } => self.on_exited(now, proc, pid, status),
            Event::SignalReceived(signal) => self.on_signal(now, signal),
            Event::StatusPolled { generation, result } => {
                if generation == self.poll_generation && self.phase == Phase::Running {
                    match result {
                        Ok(status) => self.on_status(now, status),
                        Err(error) => self.on_rpc_error(error),
                    }
                }
            }
            Event::ConfigReloaded(result) => self.on_config(now, result),
            Event::SegmentQueried(result) => {
                if self.phase == Phase::QueryingSegment {
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
                    self.spawn_core(now, height);
                }
            }
            Event::FolderChecked {
                tag,
                missing,
                result,
            } => self.on_folder_checked(now, tag, missing, result),
            Event::InstallFinished { tag, result } => self.on_install_finished(now, tag, result),
            Event::CurrentSwitched(result) => self.on_switched(now, result),
            Event::GroupsProbed { alive } => self.on_groups_probed(now, alive),
            Event::ControlReceived { id, request } => self.on_control(now, id, request),
            Event::SwitchFolderChecked { tag, result } => {
                self.on_switch_folder_checked(now, tag, result)
            }
        }
    }

    fn log(&mut self, level: LogLevel, msg: String, fields: Vec<(&'static str, String)>) {
        if level == LogLevel::Error {
            self.last_error = Some(msg.clone());
        }
        self.actions.push_back(Action::Log { level, msg, fields });
    }

    fn set_timer(&mut self, timer: Timer, at: Instant) {
        self.timers[timer as usize] = Some(at);
    }

    fn clear_timer(&mut self, timer: Timer) {
        self.timers[timer as usize] = None;
    }

    fn live_children(&self) -> Vec<(Proc, u32)> {
        [Proc::Core, Proc::DataNode]
            .into_iter()
            .filter_map(|p| self.children[p.index()].map(|pid| (p, pid)))
            .collect()
    }

    // ----- starting -----

    fn start(&mut self, now: Instant, kind: StartKind) {
        let kind = match (kind, self.first_start_height) {
            (StartKind::First | StartKind::Restart, Some(height)) => StartKind::Upgrade { height },
            _ => kind,
        };
        self.start_kind = kind;
        match (&self.run.data_node, kind) {
            (Some(data_node), StartKind::Restart | StartKind::Manual) => {
                let args = latest_segment_args(&data_node.args);
                let program = data_node.path.clone();
                self.phase = Phase::QueryingSegment;
                self.log(
                    LogLevel::Info,
                    "supervise: asking the data node for its latest history segment".into(),
                    vec![],
                );
                self.actions
                    .push_back(Action::QuerySegment { program, args });
            }
            (_, StartKind::Upgrade { height }) => self.spawn_core(now, Some(height)),
            _ => self.spawn_core(now, None),
        }
    }

    fn spawn_core(&mut self, now: Instant, snapshot_height: Option<u64>) {
        let mut args = self.run.core.args.clone();
        if let Some(height) = snapshot_height {
            let (with, existing) = with_flag(&args, SNAPSHOT_FLAG, &height.to_string());
            if let Some(existing) = existing {
                self.log(
                    LogLevel::Warn,
                    format!("supervise: the core's args already set {SNAPSHOT_FLAG}; keeping the configured value instead of {height}"),
                    vec![("configured", existing), ("file", self.run.file.display().to_string())],
                );
            }
            args = with;
        }
        self.phase = Phase::Running;
        self.answered = false;
        self.healthy_since = None;
        self.last_rpc_error = None;
        let retries = match self.start_kind {
            StartKind::Restart => self.config.max_restart_connection_retries,
            StartKind::First | StartKind::Manual | StartKind::Upgrade { .. } => {
                self.config.max_first_connection_retries
            }
        };
        let budget = CONNECT_RETRY_PERIOD.saturating_mul(retries.min(u32::MAX as u64) as u32);
        self.set_timer(Timer::ConnectBudget, later(now, budget));
        self.actions.push_back(Action::Spawn {
            proc: Proc::Core,
            program: self.run.core.path.clone(),
            args,
        });
        self.start_polling();
    }

    fn on_spawned(&mut self, _now: Instant, proc: Proc, pid: u32) {
        self.children[proc.index()] = Some(pid);
        let binary = self.binary(proc).cloned();
        if let Some(binary) = &binary {
            self.log(
                LogLevel::Info,
                format!("supervise: started {}", proc.name()),
                vec![
                    ("pid", pid.to_string()),
                    ("release", self.running_release.clone()),
                    ("path", binary.path.display().to_string()),
                ],
            );
        }
        if self.phase != Phase::Running {
            // A stop began while this spawn was being carried out; the stop's sweep has
            // already run, so this child is stopped here.
            self.actions.push_back(Action::Signal {
                proc,
                pid,
                signal: StopSignal::Term,
            });
            return;
        }
        if proc == Proc::Core {
            if let Some(data_node) = self.run.data_node.clone() {
                self.actions.push_back(Action::Spawn {
                    proc: Proc::DataNode,
                    program: data_node.path,
                    args: data_node.args,
                });
            }
        }
    }

    fn binary(&self, proc: Proc) -> Option<&Binary> {
        match proc {
            Proc::Core => Some(&self.run.core),
            Proc::DataNode => self.run.data_node.as_ref(),
        }
    }

    /// The upgrade interval while a release is pending, and from the start of a new version
    /// until it first answers (so the downtime is measured to within that interval); the
    /// status interval otherwise.
    fn wanted_poll_interval(&self) -> Duration {
        if self.pending.is_some() || (!self.answered && self.upgrade_began.is_some()) {
            self.config.upgrade_poll_interval
        } else {
            self.config.status_poll_interval
        }
    }

    fn start_polling(&mut self) {
        self.poll_generation += 1;
        let interval = self.wanted_poll_interval();
        self.poll_interval = Some(interval);
        self.actions.push_back(Action::Poll(Some(Polling {
            generation: self.poll_generation,
            socket: self.run.rpc.socket_path.clone(),
            http_path: self.run.rpc.http_path.clone(),
            interval,
        })));
    }

    fn stop_polling(&mut self) {
        self.poll_generation += 1;
        self.actions.push_back(Action::Poll(None));
    }

    // ----- stopping -----

    fn begin_stop(&mut self, now: Instant, then: AfterStop) {
        self.after_stop = then;
        self.phase = Phase::Stopping;
        self.clear_timer(Timer::ConnectBudget);
        self.stop_polling();
        let delay = self.config.stop_delay;
        if then == AfterStop::Upgrade && !delay.is_zero() && !self.live_children().is_empty() {
            self.log(
                LogLevel::Info,
                format!(
                    "upgrade: waiting stopDelaySeconds={} before stopping the binaries",
                    delay.as_secs()
                ),
                vec![],
            );
            self.set_timer(Timer::StopDelay, later(now, delay));
        } else {
            self.send_term(now);
        }
    }

    fn send_term(&mut self, now: Instant) {
        let live = self.live_children();
        if live.is_empty() && self.lingering.is_empty() {
            self.finish_stop(now);
            return;
        }
        for (proc, pid) in live {
            self.log(
                LogLevel::Info,
                format!("supervise: sending SIGTERM to {}", proc.name()),
                vec![("pid", pid.to_string())],
            );
            self.actions.push_back(Action::Signal {
                proc,
                pid,
                signal: StopSignal::Term,
            });
        }
        self.set_timer(Timer::Kill, later(now, self.config.stop_signal_timeout));
    }

    fn send_kill(&mut self, now: Instant, reason: &str) {
        for (proc, pid) in self.live_children() {
            self.log(
                LogLevel::Warn,
                format!("supervise: sending SIGKILL to {} ({reason})", proc.name()),
                vec![("pid", pid.to_string())],
            );
            self.actions.push_back(Action::Signal {
                proc,
                pid,
                signal: StopSignal::Kill,
            });
        }
        // Processes left in the group of an exited node process are killed and not waited
        // for: they are not Visor's children, so their end cannot be reported.
        for group in std::mem::take(&mut self.lingering) {
            self.log(
                LogLevel::Warn,
                format!("supervise: sending SIGKILL to the processes left in process group {} ({reason})", group.pgid),
                vec![],
            );
            self.actions.push_back(Action::SignalGroup {
                pgid: group.pgid,
                signal: StopSignal::Kill,
            });
        }
        self.clear_timer(Timer::GroupProbe);
        if self.phase == Phase::Stopping
            && self.live_children().is_empty()
            && self.timers[Timer::StopDelay as usize].is_none()
        {
            self.finish_stop(now);
        }
    }

    /// Whether the stop is complete: no child left, no group with members, no stop delay.
    fn stop_complete(&self) -> bool {
        self.live_children().is_empty()
            && self.lingering.is_empty()
            && self.timers[Timer::StopDelay as usize].is_none()
    }

    fn on_groups_probed(&mut self, now: Instant, alive: Vec<u32>) {
        self.lingering.retain(|group| alive.contains(&group.pgid));
        if self.lingering.is_empty() {
            self.clear_timer(Timer::GroupProbe);
            if self.phase == Phase::Stopping && self.stop_complete() {
                self.finish_stop(now);
            }
            return;
        }
        for group in self.lingering.iter_mut().filter(|g| !g.termed) {
            group.termed = true;
            self.actions.push_back(Action::Log {
                level: LogLevel::Warn,
                msg: format!(
                    "supervise: processes are left in process group {} after its leader exited; sending them SIGTERM",
                    group.pgid
                ),
                fields: vec![],
            });
            self.actions.push_back(Action::SignalGroup {
                pgid: group.pgid,
                signal: StopSignal::Term,
            });
        }
        if self.timers[Timer::Kill as usize].is_none() {
            self.set_timer(Timer::Kill, later(now, self.config.stop_signal_timeout));
        }
        self.set_timer(Timer::GroupProbe, later(now, GROUP_PROBE_PERIOD));
    }

    fn finish_stop(&mut self, now: Instant) {
        self.clear_timer(Timer::Kill);
        self.clear_timer(Timer::StopDelay);
        self.clear_timer(Timer::GroupProbe);
        match self.after_stop {
            AfterStop::Exit(code) => {
                self.fail_control("Visor is exiting");
                self.phase = Phase::Done;
                self.timers = [None; TIMER_COUNT];
                if let Some(install) = self.install_running.as_mut().filter(|i| !i.cancelled) {
                    // The install removes its half-made folder before Visor exits.
                    install.cancelled = true;
                    let tag = install.tag.clone();
                    self.actions.push_back(Action::CancelInstall { tag });
                }
                self.log(
                    if code == 0 {
                        LogLevel::Info
                    } else {
                        LogLevel::Error
                    },
                    format!("supervise: binaries stopped; exiting with status {code}"),
                    vec![],
                );
                self.actions.push_back(Action::Exit(code));
            }
            AfterStop::Restart => {
                self.phase = Phase::RestartWait;
                self.set_timer(Timer::RestartDelay, later(now, self.config.restarts_delay));
            }
            AfterStop::Manual => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "supervise: restarting release {} (operator request)",
                        self.running_release
                    ),
                    vec![],
                );
                self.start(now, StartKind::Manual);
            }
            AfterStop::Switch => self.on_stopped_for_switch(now),
            AfterStop::Upgrade => {
                self.phase = Phase::UpgradeWait;
                if let Some(pending) = &mut self.pending {
                    // The first complaint while stopped is an error, whatever was warned before,
                    // and a failed prefetch is tried once more at once.
                    pending.last_complaint = None;
                    if let Some(record) = self.installs.get_mut(&pending.tag) {
                        record.next_at = None;
                    }
                }
                self.log(LogLevel::Info, "upgrade: binaries stopped".into(), vec![]);
                self.advance_upgrade(now);
            }
        }
    }

    fn on_exited(&mut self, now: Instant, proc: Proc, pid: u32, status: String) {
        if self.children[proc.index()] != Some(pid) {
            return;
        }
        self.children[proc.index()] = None;
        // Helpers the process forked may outlive it in its process group: look at once.
        self.lingering.push(Lingering {
            pgid: pid,
            termed: false,
        });
        self.actions.push_back(Action::ProbeGroups(
            self.lingering.iter().map(|g| g.pgid).collect(),
        ));
        match self.phase {
            Phase::Running => {
                self.log(
                    LogLevel::Error,
                    format!("supervise: {} exited unexpectedly ({status})", proc.name()),
                    vec![("pid", pid.to_string())],
                );
                self.on_failure(now);
            }
            Phase::Stopping => {
                self.log(
                    LogLevel::Info,
                    format!("supervise: {} stopped ({status})", proc.name()),
                    vec![("pid", pid.to_string())],
                );
                if self.stop_complete() {
                    self.finish_stop(now);
                }
            }
            _ => {}
        }
    }

    /// An unplanned exit or a failed start: restart within the budget, else stop and exit 1.
    fn on_failure(&mut self, now: Instant) {
        self.fail_control("the node exited unexpectedly; Visor restarts it within its restart budget (see its log)");
        let max = self.config.max_restarts;
        if self.restarts >= max {
            self.log(
                LogLevel::Error,
                format!(
                    "supervise: restart budget spent: {max} restarts without {} s of healthy running; stopping (raise maxNumberOfRestarts in config.toml or fix the node)",
                    self.config.restart_counter_reset.as_secs()
                ),
                vec![],
            );
            self.begin_stop(now, AfterStop::Exit(1));
        } else {
            self.restarts += 1;
            self.restarts_total += 1;
            self.log(
                LogLevel::Warn,
                format!(
                    "supervise: restarting {}/{max} in {} s",
                    self.restarts,
                    self.config.restarts_delay.as_secs()
                ),
                vec![],
            );
            self.begin_stop(now, AfterStop::Restart);
        }
    }

    fn on_signal(&mut self, now: Instant, signal: ReceivedSignal) {
        if signal == ReceivedSignal::Hup {
            self.log(
                LogLevel::Info,
                "config: SIGHUP received; reloading config.toml".into(),
                vec![],
            );
            self.actions.push_back(Action::ReloadConfig);
            return;
        }
        let name = if signal == ReceivedSignal::Term {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        let second = self.signalled;
        self.signalled = true;
        self.fail_control(&format!("Visor received {name} and is stopping"));
        match self.phase {
            Phase::Running => {
                self.log(
                    LogLevel::Info,
                    format!("supervise: {name} received; stopping the binaries"),
                    vec![],
                );
                self.begin_stop(now, AfterStop::Exit(0));
            }
            Phase::Stopping => {
                // A stop that already ends in an exit keeps its status: a signal must not
                // turn "restart budget spent" (1) into a clean stop (0).
                if !matches!(self.after_stop, AfterStop::Exit(_)) {
                    self.after_stop = AfterStop::Exit(0);
                }
                if self.timers[Timer::StopDelay as usize].is_some() {
                    // The upgrade's stop delay is skipped when Visor itself is told to stop.
                    self.clear_timer(Timer::StopDelay);
                    self.send_term(now);
                }
                if second {
                    self.send_kill(now, &format!("second {name}"));
                } else {
                    self.log(
                        LogLevel::Info,
                        format!("supervise: {name} received while stopping; will exit when the binaries are gone (send it again to kill them)"),
                        vec![],
                    );
                }
            }
            Phase::Idle
            | Phase::QueryingSegment
            | Phase::RestartWait
            | Phase::UpgradeWait
            | Phase::SwitchWait => {
                self.log(
                    LogLevel::Info,
                    format!("supervise: {name} received; no binaries running"),
                    vec![],
                );
                self.after_stop = AfterStop::Exit(0);
                self.stop_polling();
                self.finish_stop(now);
            }
            Phase::Done => {}
        }
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::StopDelay => {
                if self.phase == Phase::Stopping {
                    self.send_term(now);
                }
            }
            Timer::Kill => {
                if self.phase == Phase::Stopping {
                    let timeout = self.config.stop_signal_timeout.as_secs();
                    self.send_kill(now, &format!("still running {timeout} s after SIGTERM"));
                }
            }
            Timer::RestartDelay => {
                if self.phase == Phase::RestartWait {
                    self.log(
                        LogLevel::Info,
                        format!("supervise: restarting release {}", self.running_release),
                        vec![("restart", self.restarts.to_string())],
                    );
                    self.start(now, StartKind::Restart);
                }
            }
            Timer::ConnectBudget => {
                if self.phase == Phase::Running && !self.answered {
                    let retries = match self.start_kind {
                        StartKind::Restart => (
                            "maxNumberOfRestartConnectionRetries",
                            self.config.max_restart_connection_retries,
                        ),
                        _ => (
                            "maxNumberOfFirstConnectionRetries",
                            self.config.max_first_connection_retries,
                        ),
                    };
                    let last = self
                        .last_rpc_error
                        .clone()
                        .unwrap_or_else(|| "no answer yet".into());
                    self.log(
                        LogLevel::Error,
                        format!(
                            "rpc: core not answering on {} after {} s ({}={}): {last}; check the core's log and [zeta.rpc] socketPath in {}",
                            self.run.rpc.socket_path.display(),
                            (CONNECT_RETRY_PERIOD.as_secs()).saturating_mul(retries.1),
                            retries.0,
                            retries.1,
                            self.run.file.display()
                        ),
                        vec![],
                    );
                    self.begin_stop(now, AfterStop::Exit(1));
                }
            }
            Timer::FolderRecheck => self.advance_upgrade(now),
            Timer::GroupProbe => {
                if !self.lingering.is_empty() {
                    let groups = self.lingering.iter().map(|g| g.pgid).collect();
                    self.actions.push_back(Action::ProbeGroups(groups));
                }
            }
        }
    }

    // ----- RPC answers -----

    fn on_rpc_error(&mut self, error: String) {
        self.healthy_since = None;
        let socket = self.run.rpc.socket_path.display().to_string();
        if self.answered && self.last_rpc_error.is_none() {
            self.log(
                LogLevel::Warn,
                format!("rpc: core stopped answering: {error}"),
                vec![("socket", socket)],
            );
        } else {
            self.log(
                LogLevel::Debug,
                format!("rpc: no answer: {error}"),
                vec![("socket", socket)],
            );
        }
        self.last_rpc_error = Some(error);
    }

    fn on_status(&mut self, now: Instant, status: UpgradeStatus) {
        if !self.answered {
            self.answered = true;
            self.clear_timer(Timer::ConnectBudget);
            if self.first_start_height.take().is_some() {
                self.actions.push_back(Action::ClearUpgradeMark);
            }
            if let Some(began) = self.upgrade_began.take() {
                let downtime = now.saturating_duration_since(began);
                if let StartKind::Upgrade { .. } = self.start_kind {
                    self.last_upgrade_downtime = Some(downtime);
                }
                let what = match self.start_kind {
                    StartKind::Upgrade { .. } => "upgrade",
                    _ => "switch",
                };
                self.log(
                    LogLevel::Info,
                    format!(
                        "{what}: {} is answering; downtime {} ms",
                        self.running_release,
                        downtime.as_millis()
                    ),
                    vec![],
                );
            }
            self.control_answered();
            if self.poll_interval != Some(self.wanted_poll_interval()) {
                self.start_polling();
            }
            self.log(
                LogLevel::Info,
                "rpc: core is answering".into(),
                vec![
                    ("socket", self.run.rpc.socket_path.display().to_string()),
                    ("release", self.running_release.clone()),
                ],
            );
        } else if self.last_rpc_error.is_some() {
            self.log(
                LogLevel::Info,
                "rpc: core is answering again".into(),
                vec![],
            );
        }
        self.last_rpc_error = None;
        let since = *self.healthy_since.get_or_insert(now);
        if self.restarts > 0
            && now.saturating_duration_since(since) >= self.config.restart_counter_reset
        {
            self.log(
                LogLevel::Info,
                format!(
                    "supervise: healthy for {} s; restart counter reset",
                    self.config.restart_counter_reset.as_secs()
                ),
                vec![],
            );
            self.restarts = 0;
        }
        self.on_upgrade_status(now, status);
    }

    fn on_upgrade_status(&mut self, now: Instant, status: UpgradeStatus) {
        let Some(release) = status.accepted else {
            if let Some(pending) = self.pending.take() {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "upgrade: release {} is no longer accepted by the core",
                        pending.tag
                    ),
                    vec![],
                );
                self.clear_timer(Timer::FolderRecheck);
                self.cancel_superseded_install();
                self.start_polling();
            }
            return;
        };
        if release.tag == self.running_release {
            if status.ready && !self.warned_ready_running {
                self.warned_ready_running = true;
                self.log(
                    LogLevel::Warn,
                    format!("upgrade: core says ready to upgrade to {} which is already running; ignoring", release.tag),
                    vec![],
                );
            }
            return;
        }
        let folder =
            match home::upgrade_folder(&self.home, &self.config.upgrade_folders, &release.tag) {
                Ok(folder) => folder,
                Err(error) => {
                    if self.refused_tag.as_deref() != Some(release.tag.as_str()) {
                        self.refused_tag = Some(release.tag.clone());
                        self.log(LogLevel::Error, format!("upgrade: {error}"), vec![]);
                    }
                    return;
                }
            };
        let is_new = self.pending.as_ref().map(|p| &p.tag) != Some(&release.tag);
        if is_new {
            self.log(
                LogLevel::Info,
                format!(
                    "upgrade: release {} accepted at block {}",
                    release.tag, release.height
                ),
                vec![("folder", folder.display().to_string())],
            );
            self.pending = Some(Pending {
                tag: release.tag.clone(),
                height: release.height,
                folder,
                state: FolderState::Checking,
                last_complaint: None,
            });
            self.clear_timer(Timer::FolderRecheck);
            self.cancel_superseded_install();
            self.request_check();
            self.start_polling();
        } else if let Some(pending) = &mut self.pending {
            pending.height = release.height;
        }
        if status.ready {
            self.log(
                LogLevel::Info,
                format!(
                    "upgrade: core stopped at block {} and is ready for {}; stopping the binaries",
                    release.height, release.tag
                ),
                vec![],
            );
            self.upgrade_began = Some(now);
            self.actions.push_back(Action::MarkUpgrade {
                tag: release.tag.clone(),
                height: release.height,
            });
            self.begin_stop(now, AfterStop::Upgrade);
        }
    }

    // ----- upgrading -----

    /// Asks for a check of the pending folder (already in `Checking`), or queues the request
    /// while another check runs: at most one `visor-check` worker exists.
    fn request_check(&mut self) {
        let Some(pending) = &self.pending else {
            return;
        };
        if self.check_running {
            self.check_queued = true;
            return;
        }
        self.check_running = true;
        self.actions.push_back(Action::CheckFolder {
            tag: pending.tag.clone(),
            folder: pending.folder.clone(),
        });
    }

    /// Cancels a running install whose tag is no longer the pending one.
    fn cancel_superseded_install(&mut self) {
        let pending_tag = self.pending.as_ref().map(|p| p.tag.as_str());
        let Some(install) = self
            .install_running
            .as_mut()
            .filter(|i| !i.cancelled && Some(i.tag.as_str()) != pending_tag)
        else {
            return;
        };
        install.cancelled = true;
        let tag = install.tag.clone();
        self.log(
            LogLevel::Info,
            format!("upgrade: cancelling the install of {tag}: the core no longer accepts it"),
            vec![],
        );
        self.actions.push_back(Action::CancelInstall { tag });
    }

    fn on_folder_checked(
        &mut self,
        now: Instant,
        tag: String,
        missing: bool,
        result: Result<Box<CheckedFolder>, String>,
    ) {
        self.check_running = false;
        if std::mem::take(&mut self.check_queued) {
            // A newer request came while this check ran; its answer may be stale.
            if self
                .pending
                .as_ref()
                .is_some_and(|p| p.state == FolderState::Checking)
            {
                self.request_check();
            }
            return;
        }
        let waiting = self.phase == Phase::UpgradeWait;
        let may_install = self.may_install(now, waiting);
        let Some(pending) = self.pending.as_mut().filter(|p| p.tag == tag) else {
            return;
        };
        if pending.state != FolderState::Checking {
            return;
        }
        match result {
            Ok(checked) => {
                self.on_folder_ready(now, checked, "run-config parsed, binaries report the tag")
            }
            Err(_) if missing && may_install => {
                pending.state = FolderState::Installing;
                let folder = pending.folder.clone();
                let record = self.remember_install(&tag);
                record.attempts += 1;
                let attempt = record.attempts;
                self.install_running = Some(RunningInstall {
                    tag: tag.clone(),
                    cancelled: false,
                });
                self.last_install_start = Some(now);
                let repository = format!(
                    "{}/{}",
                    self.config.auto_install.repository_owner, self.config.auto_install.repository
                );
                self.log(
                    LogLevel::Info,
                    format!("upgrade: installing {tag} from the GitHub release of {repository}"),
                    vec![
                        ("folder", folder.display().to_string()),
                        ("attempt", attempt.to_string()),
                    ],
                );
                self.actions.push_back(Action::StartInstall {
                    tag,
                    folder,
                    template: Box::new(self.run.clone()),
                });
            }
            Err(problem) => {
                let auto = &self.config.auto_install;
                let attempts = self.installs.get(&tag).map_or(0, |r| r.attempts);
                let retries_left = !auto.prefetch || attempts < PREFETCH_ATTEMPTS;
                let install_coming = missing && auto.enabled && retries_left;
                self.on_folder_not_ready(now, problem, install_coming)
            }
        }
    }

    /// The install record of `tag`, created (and the oldest forgotten) when new.
    fn remember_install(&mut self, tag: &str) -> &mut InstallRecord {
        if !self.installs.contains_key(tag) {
            if self.install_order.len() >= REMEMBERED_TAGS {
                if let Some(oldest) = self.install_order.pop_front() {
                    self.installs.remove(&oldest);
                }
            }
            self.install_order.push_back(tag.to_string());
        }
        self.installs.entry(tag.to_string()).or_default()
    }

    /// Whether the pending folder, found missing, may be installed now: auto-install is on,
    /// prefetch allows it (or the binaries are already stopped for it), no other install
    /// runs, and the tag's backoff (and, before the block, the spacing between installs)
    /// has passed.
    fn may_install(&self, now: Instant, waiting: bool) -> bool {
        let auto = &self.config.auto_install;
        let Some(pending) = &self.pending else {
            return false;
        };
        let record = self.installs.get(&pending.tag).cloned().unwrap_or_default();
        let spaced = waiting
            || self
                .last_install_start
                .is_none_or(|at| now.saturating_duration_since(at) >= INSTALL_SPACING);
        auto.enabled
            && (auto.prefetch || waiting)
            && self.install_running.is_none()
            && spaced
            && record.next_at.is_none_or(|at| now >= at)
            && (waiting || record.attempts < PREFETCH_ATTEMPTS)
    }

    fn on_folder_ready(&mut self, now: Instant, checked: Box<CheckedFolder>, how: &str) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        pending.state = FolderState::Ready(checked);
        let tag = pending.tag.clone();
        let folder = pending.folder.display().to_string();
        self.log(
            LogLevel::Info,
            format!("upgrade: folder for {tag} is ready ({how})"),
            vec![("folder", folder)],
        );
        if self.phase == Phase::UpgradeWait {
            self.advance_upgrade(now);
        }
    }

    /// Records why the folder is not ready and complains at the pace of the phase.
    /// `install_coming`: auto-install will still try to provide the folder before the block.
    fn on_folder_not_ready(&mut self, now: Instant, problem: String, install_coming: bool) {
        let waiting = self.phase == Phase::UpgradeWait;
        let Some(pending) = &mut self.pending else {
            return;
        };
        pending.state = FolderState::NotReady(problem.clone());
        let period = if waiting {
            FOLDER_ERROR_PERIOD
        } else {
            FOLDER_WARN_PERIOD
        };
        let complain = pending
            .last_complaint
            .is_none_or(|at| now.saturating_duration_since(at) >= period);
        if complain {
            pending.last_complaint = Some(now);
        }
        let tag = pending.tag.clone();
        let folder = pending.folder.display().to_string();
        if complain {
            if waiting {
                self.log(
                    LogLevel::Error,
                    format!("upgrade: binaries stopped for {tag} but its folder is not ready: {problem}; create the folder (or enable [autoInstall]) and Visor will continue"),
                    vec![("folder", folder)],
                );
            } else if install_coming {
                self.log(
                    LogLevel::Info,
                    format!("upgrade: folder for accepted release {tag} is not ready ({problem}); auto-install will provide it"),
                    vec![("folder", folder)],
                );
            } else {
                self.log(
                    LogLevel::Warn,
                    format!("upgrade: folder for accepted release {tag} is not ready: {problem}; prepare it before the upgrade block (visor prepare {tag})"),
                    vec![("folder", folder)],
                );
            }
        }
        let recheck = if waiting {
            FOLDER_RECHECK_WAITING
        } else {
            FOLDER_RECHECK_PENDING
        };
        self.set_timer(Timer::FolderRecheck, later(now, recheck));
    }

    fn on_install_finished(
        &mut self,
        now: Instant,
        tag: String,
        result: Result<Box<CheckedFolder>, String>,
    ) {
        if self.install_running.as_ref().is_some_and(|i| i.tag == tag) {
            self.install_running = None;
        }
        let backoff = {
            let record = self.remember_install(&tag);
            let backoff = INSTALL_BACKOFF
                .saturating_mul(1 << (record.attempts.saturating_sub(1)).min(10))
                .min(INSTALL_BACKOFF_MAX);
            if result.is_err() {
                record.next_at = Some(later(now, backoff));
            }
            backoff
        };
        let attempts = self.installs.get(&tag).map_or(0, |r| r.attempts);
        let current = self
            .pending
            .as_ref()
            .is_some_and(|p| p.tag == tag && p.state == FolderState::Installing);
        if !current {
            // A superseded install ended; the pending folder may have waited for the worker.
            self.log(
                LogLevel::Info,
                format!("upgrade: the install of {tag} ended; it is no longer needed"),
                vec![],
            );
            if let Some(p) = self
                .pending
                .as_mut()
                .filter(|p| matches!(p.state, FolderState::NotReady(_)))
            {
                p.state = FolderState::Checking;
                self.request_check();
            }
            return;
        }
        match result {
            Ok(checked) => self.on_folder_ready(now, checked, "installed and version checked"),
            Err(error) => {
                let gives_up = self.phase != Phase::UpgradeWait && attempts >= PREFETCH_ATTEMPTS;
                let next = if gives_up {
                    "no more attempts before the upgrade block".to_string()
                } else {
                    format!("next attempt in {} s", backoff.as_secs())
                };
                self.log(
                    LogLevel::Error,
                    format!(
                        "upgrade: install of {tag} failed (attempt {attempts}): {error}; {next}"
                    ),
                    vec![],
                );
                self.on_folder_not_ready(now, error, !gives_up);
            }
        }
    }

    /// Moves a stopped upgrade forward as far as the folder allows, or checks the folder of a
    /// pending release again.
    fn advance_upgrade(&mut self, _now: Instant) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        let folder = pending.folder.clone();
        let tag = pending.tag.clone();
        match &pending.state {
            FolderState::Checking | FolderState::Installing => {}
            FolderState::NotReady(_) => {
                pending.state = FolderState::Checking;
                self.request_check();
            }
            FolderState::Ready(checked) if self.phase == Phase::UpgradeWait => {
                let expect = Box::new(checked.fingerprint.clone());
                self.log(
                    LogLevel::Info,
                    format!("upgrade: switching to {tag}"),
                    vec![("folder", folder.display().to_string())],
                );
                self.actions
                    .push_back(Action::SwitchCurrent { folder, expect });
            }
            FolderState::Ready(_) => {}
        }
    }

    fn on_switched(&mut self, now: Instant, result: Result<(), SwitchError>) {
        if self.phase == Phase::SwitchWait {
            self.on_switched_for_operator(now, result);
            return;
        }
        if self.phase != Phase::UpgradeWait {
            return;
        }
        if let Err(SwitchError::FolderChanged(change)) = result {
            let Some(pending) = &mut self.pending else {
                return;
            };
            pending.state = FolderState::Checking;
            let tag = pending.tag.clone();
            self.log(
                LogLevel::Warn,
                format!("upgrade: the folder for {tag} changed since it was checked ({change}); checking it again before the switch"),
                vec![],
            );
            self.request_check();
            return;
        }
        if let Err(SwitchError::Failed(error)) = result {
            self.log(
                LogLevel::Error,
                format!(
                    "upgrade: cannot switch current: {error}; retrying in {} s",
                    SWITCH_RETRY.as_secs()
                ),
                vec![],
            );
            self.set_timer(Timer::FolderRecheck, later(now, SWITCH_RETRY));
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let FolderState::Ready(checked) = pending.state else {
            return;
        };
        self.run = checked.run;
        self.first_start_height = Some(pending.height);
        self.running_release = pending.tag.clone();
        self.restarts = 0;
        self.upgrades += 1;
        self.warned_ready_running = false;
        self.clear_timer(Timer::FolderRecheck);
        self.log(
            LogLevel::Info,
            format!(
                "upgrade: current now points at {}; starting the new binaries from block {}",
                pending.tag, pending.height
            ),
            vec![],
        );
        self.start(
            now,
            StartKind::Upgrade {
                height: pending.height,
            },
        );
    }

    // ----- configuration -----

    fn on_config(&mut self, now: Instant, result: Result<Box<Config>, Vec<String>>) {
        let config = match result {
            Ok(config) => config,
            Err(errors) => {
                self.refused_reload = Some(errors.join("; "));
                self.log(
                    LogLevel::Error,
                    format!(
                        "config: keeping the previous configuration: {}",
                        errors.join("; ")
                    ),
                    vec![],
                );
                return;
            }
        };
        self.refused_reload = None;
        if *config == self.config {
            self.log(
                LogLevel::Info,
                "config: config.toml read; no setting changed".into(),
                vec![],
            );
            return;
        }
        let intervals_changed = config.status_poll_interval != self.config.status_poll_interval
            || config.upgrade_poll_interval != self.config.upgrade_poll_interval;
        self.config = *config;
        self.log(
            LogLevel::Info,
            "config: configuration reloaded".into(),
            vec![],
        );
        if intervals_changed && self.phase == Phase::Running {
            self.start_polling();
        }
        if let Some(pending) = &self.pending {
            // A changed upgradeFolders mapping may move the pending release's folder.
            if let Ok(folder) =
                home::upgrade_folder(&self.home, &self.config.upgrade_folders, &pending.tag)
            {
                if folder != pending.folder && self.phase != Phase::Stopping {
                    if let Some(p) = &mut self.pending {
                        p.folder = folder;
                        p.state = FolderState::Checking;
                    }
                    self.request_check();
                }
            }
        }
        let _ = now;
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

mod control;
#[cfg(test)]
mod tests;
