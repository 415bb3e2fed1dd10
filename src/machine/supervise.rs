//! The supervision half of the machine: starting the binaries, stopping them (SIGTERM, the
//! stop timeout, SIGKILL, process groups left behind), unplanned exits and the restart
//! budget, signals, the core's answers and connection budgets, and configuration reloads.

use std::time::Instant;

use super::backup::is_backup_problem;
use super::hooks::{HookReason, HookSubject};
use super::*;

impl Machine {
    // ----- starting -----

    pub(super) fn start(&mut self, now: Instant, kind: StartKind) {
        let kind = match (kind, self.first_start_height) {
            (StartKind::First | StartKind::Restart, Some(height)) => StartKind::Upgrade { height },
            _ => kind,
        };
        match (&self.run.data_node, kind) {
            (Some(data_node), StartKind::Restart | StartKind::Manual) => {
                let args = latest_segment_args(&data_node.args);
                let program = data_node.path.clone();
                self.state = State::QueryingSegment { kind };
                self.log(
                    LogLevel::Info,
                    "supervise: asking the data node for its latest history segment".into(),
                    vec![],
                );
                self.actions
                    .push_back(Action::QuerySegment { program, args });
            }
            (_, StartKind::Upgrade { height }) => self.spawn_core(now, kind, Some(height)),
            _ => self.spawn_core(now, kind, None),
        }
    }

    pub(super) fn spawn_core(
        &mut self,
        now: Instant,
        kind: StartKind,
        snapshot_height: Option<u64>,
    ) {
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
        self.state = State::Running(Running::new(kind));
        let retries = match kind {
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

    pub(super) fn on_spawned(&mut self, _now: Instant, proc: Proc, pid: u32) {
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
        if self.phase() != Phase::Running {
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

    pub(super) fn binary(&self, proc: Proc) -> Option<&Binary> {
        match proc {
            Proc::Core => Some(&self.run.core),
            Proc::DataNode => self.run.data_node.as_ref(),
        }
    }

    /// The upgrade interval while a release is pending, and from the start of a new version
    /// until it first answers (so the downtime is measured to within that interval); the
    /// status interval otherwise.
    pub(super) fn wanted_poll_interval(&self) -> Duration {
        if self.pending.is_some() || (!self.core_answered() && self.upgrade_began.is_some()) {
            self.config.upgrade_poll_interval
        } else {
            self.config.status_poll_interval
        }
    }

    pub(super) fn start_polling(&mut self) {
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

    pub(super) fn stop_polling(&mut self) {
        self.poll_generation += 1;
        self.actions.push_back(Action::Poll(None));
    }

    // ----- stopping -----

    pub(super) fn begin_stop(&mut self, now: Instant, then: AfterStop) {
        self.state = State::Stopping { then };
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

    pub(super) fn send_term(&mut self, now: Instant) {
        let live = self.live_children();
        if live.is_empty() && self.lingering.is_empty() && self.strays.is_empty() {
            self.finish_stop(now);
            return;
        }
        if !live.is_empty() {
            // Their descendants outside their groups get SIGTERM with them. Looked for before
            // the SIGTERM, so the look does not delay noticing a quick exit (the dark time).
            self.actions
                .push_back(Action::ProbeGroups(self.probe_trees()));
        }
        self.signal_children(LogLevel::Info, StopSignal::Term, "");
        self.set_timer(Timer::Kill, later(now, self.config.stop_signal_timeout));
    }

    /// The node processes whose descendants a probe looks for: those that exited while
    /// members of their group or descendants outside it may still run, and, during a stop,
    /// those still running.
    fn probe_trees(&self) -> Vec<u32> {
        let mut trees: Vec<u32> = self.lingering.iter().map(|g| g.pgid).collect();
        if self.phase() == Phase::Stopping {
            trees.extend(self.live_children().into_iter().map(|(_, pid)| pid));
        }
        for (stray, _) in &self.strays {
            if !trees.contains(&stray.tree) {
                trees.push(stray.tree);
            }
        }
        trees
    }

    /// Sends `signal` to every live child's process group, logging each at `level`.
    fn signal_children(&mut self, level: LogLevel, signal: StopSignal, reason: &str) {
        let name = match signal {
            StopSignal::Term => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        };
        for (proc, pid) in self.live_children() {
            self.log(
                level,
                format!("supervise: sending {name} to {}{reason}", proc.name()),
                vec![("pid", pid.to_string())],
            );
            self.actions.push_back(Action::Signal { proc, pid, signal });
        }
    }

    pub(super) fn send_kill(&mut self, now: Instant, reason: &str) {
        self.signal_children(LogLevel::Warn, StopSignal::Kill, &format!(" ({reason})"));
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
        // So are the descendants found outside the groups, each still identified by its
        // start time.
        for (stray, _) in std::mem::take(&mut self.strays) {
            self.log(
                LogLevel::Warn,
                format!(
                    "supervise: sending SIGKILL to process {}, a descendant of process group {} outside it ({reason})",
                    stray.pid, stray.tree
                ),
                vec![],
            );
            self.actions.push_back(Action::SignalProcess {
                pid: stray.pid,
                start_time: stray.start_time,
                signal: StopSignal::Kill,
            });
        }
        self.clear_timer(Timer::GroupProbe);
        if self.phase() == Phase::Stopping
            && self.live_children().is_empty()
            && !self.timers.is_set(Timer::StopDelay)
        {
            self.finish_stop(now);
        }
    }

    /// Whether the stop is complete: no child left, no group with members, no descendant
    /// outside a group, no stop delay.
    pub(super) fn stop_complete(&self) -> bool {
        self.live_children().is_empty()
            && self.lingering.is_empty()
            && self.strays.is_empty()
            && !self.timers.is_set(Timer::StopDelay)
    }

    pub(super) fn on_groups_probed(&mut self, now: Instant, alive: Vec<u32>, strays: Vec<Stray>) {
        self.lingering.retain(|group| alive.contains(&group.pgid));
        // The strays of the trees probed are what this probe found; those of other trees
        // (not probed this time) are kept.
        let probed = self.probe_trees();
        let before = std::mem::take(&mut self.strays);
        let termed = |s: &Stray| {
            before
                .iter()
                .any(|(b, t)| *t && b.pid == s.pid && b.start_time == s.start_time)
        };
        self.strays = before
            .iter()
            .filter(|(b, _)| !probed.contains(&b.tree))
            .copied()
            .collect();
        for stray in strays {
            if !self.strays.iter().any(|(s, _)| s.pid == stray.pid) {
                self.strays.push((stray, termed(&stray)));
            }
        }
        if self.lingering.is_empty() && self.strays.is_empty() {
            self.clear_timer(Timer::GroupProbe);
            if self.phase() == Phase::Stopping && self.stop_complete() {
                self.finish_stop(now);
            }
            return;
        }
        for index in 0..self.strays.len() {
            let (stray, termed) = self.strays[index];
            if termed {
                continue;
            }
            self.strays[index].1 = true;
            self.log(
                LogLevel::Warn,
                format!(
                    "supervise: process {} descends from process group {} but left it; sending it SIGTERM",
                    stray.pid, stray.tree
                ),
                vec![],
            );
            self.actions.push_back(Action::SignalProcess {
                pid: stray.pid,
                start_time: stray.start_time,
                signal: StopSignal::Term,
            });
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
        if !self.timers.is_set(Timer::Kill) {
            self.set_timer(Timer::Kill, later(now, self.config.stop_signal_timeout));
        }
        self.set_timer(Timer::GroupProbe, later(now, GROUP_PROBE_PERIOD));
    }

    pub(super) fn finish_stop(&mut self, now: Instant) {
        self.clear_timer(Timer::Kill);
        self.clear_timer(Timer::StopDelay);
        self.clear_timer(Timer::GroupProbe);
        match self.stopping_then().unwrap_or(AfterStop::Exit(0)) {
            AfterStop::Exit(code) => {
                self.fail_control("Visor is exiting");
                self.state = State::Done;
                self.timers.stop_all();
                if let Some(install) = self.install_running.as_mut().filter(|i| !i.cancelled) {
                    // The install removes its half-made folder before Visor exits.
                    install.cancelled = true;
                    let tag = install.tag.clone();
                    self.actions.push_back(Action::CancelInstall { tag });
                }
                // So does a backup; the coordinator waits for both.
                self.cancel_backup();
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
                self.state = State::RestartWait;
                self.set_timer(Timer::RestartDelay, later(now, self.config.restarts_delay));
            }
            AfterStop::Manual => {
                self.take_restart_run_config();
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
                self.state = State::UpgradeWait;
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

    pub(super) fn on_exited(&mut self, now: Instant, proc: Proc, pid: u32, status: String) {
        if self.children[proc.index()] != Some(pid) {
            return;
        }
        self.children[proc.index()] = None;
        // Helpers the process forked may outlive it in its process group: look at once.
        self.lingering.push(Lingering {
            pgid: pid,
            termed: false,
        });
        self.actions
            .push_back(Action::ProbeGroups(self.probe_trees()));
        match self.phase() {
            Phase::Running => {
                self.log(
                    LogLevel::Error,
                    format!("supervise: {} exited unexpectedly ({status})", proc.name()),
                    vec![("pid", pid.to_string())],
                );
                self.on_failure(now, proc);
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

    /// An unplanned exit or a failed start of `proc`: restart within the budget, else stop
    /// and exit 1.
    pub(super) fn on_failure(&mut self, now: Instant, proc: Proc) {
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
            self.restarts_by_proc[proc.index()] += 1;
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

    pub(super) fn on_signal(&mut self, now: Instant, signal: ReceivedSignal) {
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
        match self.phase() {
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
                if let State::Stopping { then } = &mut self.state {
                    if !matches!(then, AfterStop::Exit(_)) {
                        *then = AfterStop::Exit(0);
                    }
                }
                if self.timers.is_set(Timer::StopDelay) {
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
                self.state = State::Stopping {
                    then: AfterStop::Exit(0),
                };
                self.stop_polling();
                self.finish_stop(now);
            }
            Phase::Done => {}
        }
    }

    pub(super) fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::StopDelay => {
                if self.phase() == Phase::Stopping {
                    self.send_term(now);
                }
            }
            Timer::Kill => {
                if self.phase() == Phase::Stopping {
                    let timeout = self.config.stop_signal_timeout.as_secs();
                    self.send_kill(now, &format!("still running {timeout} s after SIGTERM"));
                }
            }
            Timer::RestartDelay => {
                if self.phase() == Phase::RestartWait {
                    self.log(
                        LogLevel::Info,
                        format!("supervise: restarting release {}", self.running_release),
                        vec![("restart", self.restarts.to_string())],
                    );
                    self.start(now, StartKind::Restart);
                }
            }
            Timer::ConnectBudget => {
                let Some(running) = self.running().filter(|r| !r.answered) else {
                    return;
                };
                {
                    let retries = match running.kind {
                        StartKind::Restart => (
                            "maxNumberOfRestartConnectionRetries",
                            self.config.max_restart_connection_retries,
                        ),
                        _ => (
                            "maxNumberOfFirstConnectionRetries",
                            self.config.max_first_connection_retries,
                        ),
                    };
                    let last = running
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
            Timer::AcceptedHook => self.start_accepted_hook(now),
            Timer::BackupRetry => {
                if self.phase() == Phase::UpgradeWait {
                    self.advance_upgrade(now);
                }
            }
            Timer::GroupProbe => {
                if !self.lingering.is_empty() || !self.strays.is_empty() {
                    self.actions
                        .push_back(Action::ProbeGroups(self.probe_trees()));
                }
            }
        }
    }

    // ----- RPC answers -----

    pub(super) fn on_rpc_error(&mut self, error: String) {
        let socket = self.run.rpc.socket_path.display().to_string();
        let Some(running) = self.running_mut() else {
            return;
        };
        running.healthy_since = None;
        let first_failure = running.answered && running.last_rpc_error.is_none();
        running.last_rpc_error = Some(error.clone());
        if first_failure {
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
    }

    pub(super) fn on_status(&mut self, now: Instant, status: UpgradeStatus) {
        let Some(running) = self.running_mut() else {
            return;
        };
        let first_answer = !running.answered;
        let answering_again = running.last_rpc_error.take().is_some();
        running.answered = true;
        let kind = running.kind;
        let since = *running.healthy_since.get_or_insert(now);
        if first_answer {
            self.on_first_answer(now, kind);
        } else if answering_again {
            self.log(
                LogLevel::Info,
                "rpc: core is answering again".into(),
                vec![],
            );
        }
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

    /// The core of this start answered for the first time: the connection budget, the
    /// upgrade mark and a request under way are done with, and the downtime is known.
    fn on_first_answer(&mut self, now: Instant, kind: StartKind) {
        self.clear_timer(Timer::ConnectBudget);
        // Running and answering again: whatever went wrong before this start is over, except
        // a refused config.toml, which a good reload ends, and a problem of [backup], which
        // a check that finds none ends.
        self.resolve_error(now, |message| {
            !message.starts_with("config:") && !is_backup_problem(message)
        });
        if self.first_start_height.take().is_some() {
            self.actions.push_back(Action::ClearUpgradeMark);
        }
        if let Some(began) = self.upgrade_began.take() {
            let downtime = now.saturating_duration_since(began);
            let what = match kind {
                StartKind::Upgrade { .. } => {
                    self.last_upgrade_downtime = Some(downtime);
                    "upgrade"
                }
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
        if let Some(after) = self.after_start.take() {
            self.run_hook(HookKind::AfterUpgrade, &after.subject());
        } else if let StartKind::Upgrade { height } = kind {
            // A Visor restarted before the upgraded version answered (the upgrade mark).
            let (release, previous) = (self.running_release.clone(), self.previous_release.clone());
            let folder = self.running_folder().to_path_buf();
            let subject = HookSubject {
                reason: HookReason::Upgrade,
                release: &release,
                height: Some(height),
                folder: &folder,
                from: &previous,
                backup: None,
            };
            self.run_hook(HookKind::AfterUpgrade, &subject);
        }
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
    }

    // ----- configuration -----

    /// A SIGHUP's read found the file as it was last read (and reported) and accepted: said
    /// once, in other words than that report, which an edit already got.
    pub(super) fn on_config_unchanged(&mut self, now: Instant) {
        self.last_reload = Some(now);
        self.log(
            LogLevel::Info,
            "config: config.toml unchanged since it was last read; nothing to reload".into(),
            vec![],
        );
        self.backup_reloaded(now);
    }

    pub(super) fn on_config(&mut self, now: Instant, result: Result<Box<Config>, Vec<String>>) {
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
        self.last_reload = Some(now);
        self.resolve_error(now, |message| message.starts_with("config:"));
        if *config == self.config {
            self.log(
                LogLevel::Info,
                "config: config.toml read; no setting changed".into(),
                vec![],
            );
            self.backup_reloaded(now);
            return;
        }
        self.config = *config;
        self.log(
            LogLevel::Info,
            "config: configuration reloaded".into(),
            vec![],
        );
        // A new generation: the intervals may have changed, and the poller reports the next
        // answer even if it is unchanged, so it is looked at under the new settings (a tag
        // refused under the old upgradeFolders, say).
        if self.phase() == Phase::Running {
            self.start_polling();
        }
        if let Some(pending) = &self.pending {
            // A changed upgradeFolders mapping may move the pending release's folder.
            if let Ok(folder) =
                home::upgrade_folder(&self.home, &self.config.upgrade_folders, &pending.tag)
            {
                if folder != pending.folder && self.phase() != Phase::Stopping {
                    if let Some(p) = &mut self.pending {
                        p.folder = folder;
                        p.state = FolderState::Checking;
                    }
                    self.request_check();
                }
            }
        }
        self.backup_reloaded(now);
    }
}
