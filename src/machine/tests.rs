//! Scripted tests of the state machine: events at offsets from one base instant, asserting
//! the actions drained. A small fake driver answers `Spawn` with a new pid and
//! `SwitchCurrent` with success, as the coordinator does; nothing sleeps.

use super::*;
use crate::backup::Reason;
use crate::config::backup::OnFailure;
use crate::config::hooks::HookKind;
use crate::config::run_config::RpcTarget;
use crate::node::client::AcceptedRelease;
use hooks::{ACCEPTED_SPACING, HOOK_RETRY, REMEMBERED_ACCEPTED};
use std::path::Path;

struct Harness {
    machine: Machine,
    base: Instant,
    now: Instant,
    next_pid: u32,
    logs: Vec<(LogLevel, String)>,
    switch_result: Result<(), SwitchError>,
    /// Process groups the fake driver reports as still having members.
    alive_groups: Vec<u32>,
    /// Descendants outside their groups the fake driver reports (for the trees probed).
    strays: Vec<Stray>,
    probes: Vec<Vec<u32>>,
}

fn binary(path: &str, args: &[&str]) -> Binary {
    Binary {
        path: PathBuf::from(path),
        configured_path: path.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

fn run_config(name: &str, data_node: bool) -> RunConfig {
    RunConfig {
        file: PathBuf::from(format!("/h/{name}/run-config.toml")),
        name: name.to_string(),
        core: binary(&format!("/h/{name}/zeta"), &["start", "--home", "/z"]),
        rpc: RpcTarget {
            socket_path: PathBuf::from(format!("/run/{name}.sock")),
            http_path: "/rpc".to_string(),
        },
        data_node: data_node.then(|| {
            binary(
                &format!("/h/{name}/zeta"),
                &["datanode", "start", "--home", "/d"],
            )
        }),
    }
}

/// A folder found ready, as the check worker reports it.
fn checked(name: &str, data_node: bool) -> Box<CheckedFolder> {
    Box::new(CheckedFolder {
        run: run_config(name, data_node),
        fingerprint: Fingerprint::fake(&format!("/h/{name}")),
    })
}

fn switch_to(name: &str) -> Action {
    Action::SwitchCurrent {
        folder: PathBuf::from(format!("/h/{name}")),
        expect: Box::new(Fingerprint::fake(&format!("/h/{name}"))),
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

impl Harness {
    fn new(config: Config, data_node: bool) -> Harness {
        let base = Instant::now();
        Harness {
            machine: Machine::new(config, PathBuf::from("/h"), run_config("v1", data_node)),
            base,
            now: base,
            next_pid: 100,
            logs: Vec::new(),
            switch_result: Ok(()),
            alive_groups: Vec::new(),
            strays: Vec::new(),
            probes: Vec::new(),
        }
    }

    fn at_ms(&mut self, offset: u64) -> &mut Self {
        self.now = self.base + Duration::from_millis(offset);
        self
    }

    /// Feeds one event and returns the non-log actions, answering the synchronous ones.
    fn event(&mut self, event: Event) -> Vec<Action> {
        self.machine.handle(self.now, event);
        self.drain()
    }

    /// Fires due timers and returns the non-log actions.
    fn timeout(&mut self) -> Vec<Action> {
        self.machine.handle_timeout(self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(action) = self.machine.poll_action() {
            match &action {
                Action::Log { level, msg, .. } => {
                    self.logs.push((*level, msg.clone()));
                    continue;
                }
                Action::Spawn { proc, .. } => {
                    let pid = self.next_pid;
                    self.next_pid += 1;
                    let proc = *proc;
                    out.push(action);
                    self.machine
                        .handle(self.now, Event::ChildSpawned { proc, pid });
                }
                Action::SwitchCurrent { .. } => {
                    out.push(action);
                    let result = self.switch_result.clone();
                    self.machine
                        .handle(self.now, Event::CurrentSwitched(result));
                }
                Action::ProbeGroups(groups) => {
                    self.probes.push(groups.clone());
                    let alive = groups
                        .iter()
                        .copied()
                        .filter(|g| self.alive_groups.contains(g))
                        .collect();
                    let strays = self
                        .strays
                        .iter()
                        .filter(|s| groups.contains(&s.tree))
                        .copied()
                        .collect();
                    self.machine
                        .handle(self.now, Event::GroupsProbed { alive, strays });
                }
                _ => out.push(action),
            }
        }
        out
    }

    fn pid(&self, proc: Proc) -> u32 {
        self.machine.child_pid(proc).expect("child running")
    }

    fn exit(&mut self, proc: Proc) -> Vec<Action> {
        let pid = self.pid(proc);
        self.event(Event::ChildExited {
            proc,
            pid,
            status: "exit status 3".into(),
        })
    }

    fn status(&mut self, accepted: Option<(&str, u64)>, ready: bool) -> Vec<Action> {
        let generation = self.machine.poll_generation;
        self.event(Event::StatusPolled {
            generation,
            result: Ok(UpgradeStatus {
                accepted: accepted.map(|(tag, height)| AcceptedRelease {
                    tag: tag.to_string(),
                    height,
                }),
                ready,
            }),
        })
    }

    fn rpc_error(&mut self) -> Vec<Action> {
        let generation = self.machine.poll_generation;
        self.event(Event::StatusPolled {
            generation,
            result: Err("connect /run/v1.sock: No such file or directory".into()),
        })
    }

    /// How many times the core was spawned.
    fn starts_of_core(&self) -> u32 {
        self.next_pid - 100
    }

    fn logged(&self, level: LogLevel, needle: &str) -> usize {
        self.logs
            .iter()
            .filter(|(l, m)| *l == level && m.contains(needle))
            .count()
    }
}

fn spawned(actions: &[Action]) -> Vec<(Proc, Vec<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { proc, args, .. } => Some((*proc, args.clone())),
            _ => None,
        })
        .collect()
}

fn signals(actions: &[Action]) -> Vec<(Proc, StopSignal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { proc, signal, .. } => Some((*proc, *signal)),
            _ => None,
        })
        .collect()
}

fn fast_config() -> Config {
    Config {
        restarts_delay: Duration::from_secs(5),
        ..Config::default()
    }
}

#[test]
fn start_spawns_core_then_data_node_with_configured_args_and_polls() {
    let mut h = Harness::new(Config::default(), true);
    let actions = h.event(Event::Started);
    assert_eq!(
        actions[1],
        Action::Poll(Some(Polling {
            generation: 1,
            socket: PathBuf::from("/run/v1.sock"),
            http_path: "/rpc".into(),
            interval: Duration::from_millis(500),
        }))
    );
    assert_eq!(
        spawned(&actions),
        vec![
            (Proc::Core, strings(&["start", "--home", "/z"])),
            (
                Proc::DataNode,
                strings(&["datanode", "start", "--home", "/d"])
            ),
        ]
    );
    assert_eq!(h.machine.phase(), Phase::Running);
    // A second Started is a nop.
    assert!(h.event(Event::Started).is_empty());
}

#[test]
fn crash_stops_the_other_and_restarts_after_the_delay_with_segment_height() {
    let mut h = Harness::new(fast_config(), true);
    h.event(Event::Started);
    h.at_ms(1000);
    let actions = h.exit(Proc::Core);
    assert_eq!(signals(&actions), vec![(Proc::DataNode, StopSignal::Term)]);
    let actions = h.exit(Proc::DataNode);
    assert!(spawned(&actions).is_empty());
    assert_eq!(h.machine.phase(), Phase::RestartWait);
    assert_eq!(h.machine.restarts(), 1);
    assert_eq!(
        h.machine.next_deadline(),
        Some(h.base + Duration::from_millis(6000))
    );
    // Nothing happens before the delay is over.
    h.at_ms(5999);
    assert!(h.timeout().is_empty());
    h.at_ms(6000);
    let actions = h.timeout();
    assert_eq!(
        actions,
        vec![Action::QuerySegment {
            program: PathBuf::from("/h/v1/zeta"),
            args: strings(&[
                "datanode",
                "network-history",
                "latest-history-segment",
                "--output",
                "json",
                "--home",
                "/d"
            ]),
        }]
    );
    let actions = h.event(Event::SegmentQueried(Ok(Some(4000))));
    assert_eq!(
        spawned(&actions),
        vec![
            (
                Proc::Core,
                strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "4000"])
            ),
            (
                Proc::DataNode,
                strings(&["datanode", "start", "--home", "/d"])
            ),
        ]
    );
}

#[test]
fn restart_without_segments_starts_the_core_without_the_flag() {
    let mut h = Harness::new(fast_config(), true);
    h.event(Event::Started);
    h.exit(Proc::DataNode);
    h.exit(Proc::Core);
    h.at_ms(5000);
    h.timeout();
    let actions = h.event(Event::SegmentQueried(Ok(None)));
    assert_eq!(
        spawned(&actions)[0],
        (Proc::Core, strings(&["start", "--home", "/z"]))
    );
}

#[test]
fn restart_without_data_node_spawns_directly() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let actions = h.exit(Proc::Core);
    assert!(signals(&actions).is_empty());
    h.at_ms(5000);
    let actions = h.timeout();
    assert_eq!(
        spawned(&actions),
        vec![(Proc::Core, strings(&["start", "--home", "/z"]))]
    );
}

#[test]
fn restart_budget_spent_stops_and_exits_1() {
    let config = Config {
        max_restarts: 2,
        ..fast_config()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    let mut t = 0;
    for round in 1..=2 {
        h.exit(Proc::Core);
        assert_eq!(h.machine.restarts(), round);
        t += 5000;
        h.at_ms(t);
        assert_eq!(spawned(&h.timeout()).len(), 1);
    }
    let actions = h.exit(Proc::Core);
    assert_eq!(actions.last(), Some(&Action::Exit(1)));
    assert_eq!(h.logged(LogLevel::Error, "restart budget spent"), 1);
    assert_eq!(h.machine.phase(), Phase::Done);
    assert_eq!(h.machine.next_deadline(), None);
}

#[test]
fn zero_restarts_allowed_means_first_crash_exits_after_stopping_the_data_node() {
    let config = Config {
        max_restarts: 0,
        ..fast_config()
    };
    let mut h = Harness::new(config, true);
    h.event(Event::Started);
    let actions = h.exit(Proc::Core);
    assert_eq!(signals(&actions), vec![(Proc::DataNode, StopSignal::Term)]);
    assert_eq!(h.exit(Proc::DataNode), vec![Action::Exit(1)]);
}

#[test]
fn healthy_running_resets_the_restart_counter() {
    let config = Config {
        restart_counter_reset: Duration::from_secs(600),
        ..fast_config()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    h.exit(Proc::Core);
    h.at_ms(5000);
    h.timeout();
    assert_eq!(h.machine.restarts(), 1);
    h.at_ms(10_000);
    h.status(None, false);
    h.at_ms(300_000);
    h.status(None, false);
    assert_eq!(h.machine.restarts(), 1, "not yet healthy long enough");
    // A failed call breaks the healthy streak.
    h.rpc_error();
    h.at_ms(400_000);
    h.status(None, false);
    h.at_ms(999_999);
    h.status(None, false);
    assert_eq!(h.machine.restarts(), 1);
    h.at_ms(1_000_000);
    h.status(None, false);
    assert_eq!(h.machine.restarts(), 0);
}

#[test]
fn sigterm_stops_children_and_exits_0() {
    let mut h = Harness::new(Config::default(), true);
    h.event(Event::Started);
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(actions[0], Action::Poll(None));
    assert_eq!(
        signals(&actions),
        vec![
            (Proc::Core, StopSignal::Term),
            (Proc::DataNode, StopSignal::Term)
        ]
    );
    assert!(h.exit(Proc::Core).is_empty());
    assert_eq!(h.exit(Proc::DataNode), vec![Action::Exit(0)]);
}

#[test]
fn second_signal_kills_at_once() {
    let mut h = Harness::new(Config::default(), true);
    h.event(Event::Started);
    h.event(Event::SignalReceived(ReceivedSignal::Int));
    h.exit(Proc::DataNode);
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(signals(&actions), vec![(Proc::Core, StopSignal::Kill)]);
    assert_eq!(h.exit(Proc::Core), vec![Action::Exit(0)]);
}

#[test]
fn child_ignoring_sigterm_is_killed_after_the_timeout() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    h.event(Event::SignalReceived(ReceivedSignal::Term));
    h.at_ms(14_999);
    assert!(h.timeout().is_empty());
    h.at_ms(15_000);
    assert_eq!(signals(&h.timeout()), vec![(Proc::Core, StopSignal::Kill)]);
    assert_eq!(h.exit(Proc::Core), vec![Action::Exit(0)]);
}

#[test]
fn signal_during_restart_delay_exits_at_once() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.exit(Proc::Core);
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(actions, vec![Action::Poll(None), Action::Exit(0)]);
}

#[test]
fn sighup_asks_for_a_reload_and_changes_nothing_else() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    assert_eq!(
        h.event(Event::SignalReceived(ReceivedSignal::Hup)),
        vec![Action::ReloadConfig]
    );
    assert_eq!(h.machine.phase(), Phase::Running);
}

#[test]
fn first_connection_budget_exhausted_stops_and_exits_1() {
    let config = Config {
        max_first_connection_retries: 3,
        ..Config::default()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    h.at_ms(1000);
    h.rpc_error();
    h.at_ms(5999);
    assert!(h.timeout().is_empty());
    h.at_ms(6000);
    let actions = h.timeout();
    assert_eq!(signals(&actions), vec![(Proc::Core, StopSignal::Term)]);
    assert_eq!(
        h.logged(
            LogLevel::Error,
            "core not answering on /run/v1.sock after 6 s"
        ),
        1
    );
    assert!(h.logs.iter().any(|(_, m)| m.contains("No such file")));
    assert_eq!(h.exit(Proc::Core), vec![Action::Exit(1)]);
}

#[test]
fn an_answer_within_the_budget_cancels_it() {
    let config = Config {
        max_first_connection_retries: 3,
        ..Config::default()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    h.at_ms(5000);
    h.status(None, false);
    assert_eq!(h.machine.next_deadline(), None);
    h.at_ms(60_000);
    assert!(h.timeout().is_empty());
}

#[test]
fn restart_uses_the_restart_connection_budget() {
    let config = Config {
        max_first_connection_retries: 100,
        max_restart_connection_retries: 2,
        ..fast_config()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    h.status(None, false);
    h.exit(Proc::Core);
    h.at_ms(5000);
    h.timeout();
    h.at_ms(8999);
    assert!(h.timeout().is_empty());
    h.at_ms(9000);
    assert_eq!(signals(&h.timeout()), vec![(Proc::Core, StopSignal::Term)]);
    assert_eq!(
        h.logged(LogLevel::Error, "maxNumberOfRestartConnectionRetries=2"),
        1
    );
}

#[test]
fn stale_poll_results_are_dropped() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    let actions = h.event(Event::StatusPolled {
        generation: 0,
        result: Ok(UpgradeStatus {
            accepted: Some(AcceptedRelease {
                tag: "v2".into(),
                height: 10,
            }),
            ready: true,
        }),
    });
    assert!(actions.is_empty());
    assert_eq!(h.machine.pending(), None);
}

#[test]
fn a_broken_reload_keeps_the_config_and_logs_one_error() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    let actions = h.event(Event::ConfigReloaded(Err(vec![
        "/h/config.toml:3: maxNumberOfRestartz: unknown key".into(),
    ])));
    assert!(actions.is_empty());
    assert_eq!(h.logged(LogLevel::Error, "maxNumberOfRestartz"), 1);
    assert_eq!(h.machine.config(), &Config::default());
}

#[test]
fn the_last_error_keeps_its_time_and_is_resolved_once_its_condition_is_gone() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    assert_eq!(h.machine.last_error(), None);
    // A crash: the error stays unresolved until the restarted core answers.
    h.at_ms(1_000);
    h.exit(Proc::Core);
    let crash = h.machine.last_error().cloned().unwrap();
    assert!(
        crash.message.contains("core exited unexpectedly"),
        "{crash:?}"
    );
    assert_eq!(crash.at, h.base + Duration::from_millis(1_000));
    assert_eq!(crash.resolved_at, None);
    h.at_ms(6_000);
    h.timeout();
    assert_eq!(h.machine.last_error().unwrap().resolved_at, None);
    h.at_ms(6_500);
    h.status(None, false);
    let resolved = h.machine.last_error().unwrap();
    assert_eq!(resolved.message, crash.message);
    assert_eq!(resolved.at, crash.at);
    assert_eq!(
        resolved.resolved_at,
        Some(h.base + Duration::from_millis(6_500))
    );
    // A refused config.toml: a start does not end it, a good reload does.
    h.at_ms(7_000);
    h.event(Event::ConfigReloaded(Err(vec![
        "/h/config.toml:1: x: bad".into()
    ])));
    h.at_ms(8_000);
    restart_with(&mut h, 1, run_config("v1", false));
    h.exit(Proc::Core);
    h.status(None, false);
    assert!(h.machine.core_answered());
    let error = h.machine.last_error().unwrap();
    assert!(error.message.starts_with("config:"), "{error:?}");
    assert_eq!(error.resolved_at, None);
    h.at_ms(14_000);
    h.event(Event::ConfigReloaded(Ok(Box::new(fast_config()))));
    assert_eq!(
        h.machine.last_error().unwrap().resolved_at,
        Some(h.base + Duration::from_millis(14_000))
    );
    // An upgrade blocked on its folder: resolved when the folder is ready.
    h.status(Some(("v2", 7)), true);
    h.at_ms(15_000);
    h.exit(Proc::Core);
    h.event(Event::FolderChecked {
        tag: "v2".into(),
        missing: true,
        result: Err("/h/v2: no such folder".into()),
    });
    let error = h.machine.last_error().unwrap();
    assert!(
        error
            .message
            .starts_with("upgrade: binaries stopped for v2"),
        "{error:?}"
    );
    assert_eq!(error.resolved_at, None);
    h.at_ms(16_000);
    h.timeout();
    h.event(ready_folder("v2"));
    assert_eq!(
        h.machine.last_error().unwrap().resolved_at,
        Some(h.base + Duration::from_millis(16_000))
    );
}

#[test]
fn a_sighup_read_of_an_unchanged_file_says_so_once_and_counts_as_a_reload() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    h.at_ms(500);
    assert!(h.event(Event::ConfigUnchanged).is_empty());
    assert_eq!(h.logged(LogLevel::Info, "config:"), 1);
    assert_eq!(
        h.logged(LogLevel::Info, "unchanged since it was last read"),
        1
    );
    assert_eq!(
        h.machine.last_reload(),
        Some(h.base + Duration::from_millis(500))
    );
}

#[test]
fn a_valid_reload_applies_and_retargets_polling_when_intervals_change() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    let config = Config {
        status_poll_interval: Duration::from_millis(200),
        max_restarts: 9,
        ..Config::default()
    };
    let actions = h.event(Event::ConfigReloaded(Ok(Box::new(config.clone()))));
    assert!(matches!(
        &actions[..],
        [Action::Poll(Some(Polling { interval, .. }))] if *interval == Duration::from_millis(200)
    ));
    assert_eq!(h.machine.config(), &config);
    // The same content again is a nop.
    assert!(h
        .event(Event::ConfigReloaded(Ok(Box::new(config))))
        .is_empty());
}

/// The poller leaves out answers equal to the last one it reported (for up to
/// `UNCHANGED_REPORT_PERIOD`); a reload that changes any setting starts a new generation, so
/// the core's next answer, unchanged or not, is looked at under the new settings at once.
#[test]
fn any_applied_reload_starts_a_new_poll_generation() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    let before = h.machine.poll_generation;
    let config = Config {
        max_restarts: 9,
        ..Config::default()
    };
    let actions = h.event(Event::ConfigReloaded(Ok(Box::new(config))));
    assert!(
        matches!(
            &actions[..],
            [Action::Poll(Some(Polling { generation, interval, .. }))]
                if *generation == before + 1 && *interval == Duration::from_millis(500)
        ),
        "{actions:?}"
    );
}

fn ready_folder(name: &str) -> Event {
    Event::FolderChecked {
        tag: name.to_string(),
        missing: false,
        result: Ok(checked(name, false)),
    }
}

#[test]
fn upgrade_with_a_ready_folder() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    let actions = h.status(Some(("v2", 1200)), false);
    assert_eq!(
        actions,
        vec![
            Action::CheckFolder {
                tag: "v2".into(),
                folder: PathBuf::from("/h/v2"),
            },
            Action::Poll(Some(Polling {
                generation: 2,
                socket: PathBuf::from("/run/v1.sock"),
                http_path: "/rpc".into(),
                interval: Duration::from_millis(100),
            })),
        ]
    );
    assert!(h.event(ready_folder("v2")).is_empty());
    assert_eq!(h.machine.pending(), Some(("v2", 1200, true)));
    // The same pending status again changes nothing.
    assert!(h.status(Some(("v2", 1200)), false).is_empty());

    let actions = h.status(Some(("v2", 1200)), true);
    assert_eq!(
        actions,
        vec![
            Action::MarkUpgrade {
                tag: "v2".into(),
                height: 1200
            },
            Action::Poll(None),
            Action::Signal {
                proc: Proc::Core,
                pid: 100,
                signal: StopSignal::Term
            }
        ]
    );
    let actions = h.exit(Proc::Core);
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(
        spawned(&actions),
        vec![(
            Proc::Core,
            strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "1200"])
        )]
    );
    assert!(actions.contains(&Action::Poll(Some(Polling {
        generation: 4,
        socket: PathBuf::from("/run/v2.sock"),
        http_path: "/rpc".into(),
        // The upgrade interval until the new core first answers, so the downtime is exact.
        interval: Duration::from_millis(100),
    }))));
    assert_eq!(h.machine.running_release(), "v2");
    assert_eq!(h.machine.upgrades(), 1);
    assert_eq!(h.machine.pending(), None);
    // The new version gets the first-connection budget again.
    assert_eq!(
        h.machine.next_deadline(),
        Some(h.now + CONNECT_RETRY_PERIOD * 175_000)
    );
}

#[test]
fn upgrade_resets_the_restart_counter() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.exit(Proc::Core);
    h.at_ms(5000);
    h.timeout();
    assert_eq!(h.machine.restarts(), 1);
    h.status(Some(("v2", 50)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 50)), true);
    h.exit(Proc::Core);
    assert_eq!(h.machine.restarts(), 0);
}

#[test]
fn upgrade_honours_the_stop_delay() {
    let config = Config {
        stop_delay: Duration::from_secs(3),
        ..fast_config()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    h.status(Some(("v2", 1)), false);
    h.event(ready_folder("v2"));
    let actions = h.status(Some(("v2", 1)), true);
    assert!(signals(&actions).is_empty());
    h.at_ms(2999);
    assert!(h.timeout().is_empty());
    h.at_ms(3000);
    assert_eq!(signals(&h.timeout()), vec![(Proc::Core, StopSignal::Term)]);
}

#[test]
fn a_signal_during_the_stop_delay_skips_it() {
    let config = Config {
        stop_delay: Duration::from_secs(3),
        ..fast_config()
    };
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    h.status(Some(("v2", 1)), true);
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(signals(&actions), vec![(Proc::Core, StopSignal::Term)]);
    assert_eq!(h.exit(Proc::Core), vec![Action::Exit(0)]);
}

#[test]
fn missing_folder_warns_then_waits_stopped_until_it_appears() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    let missing = || Event::FolderChecked {
        tag: "v2".into(),
        missing: true,
        result: Err("/h/v2/run-config.toml: No such file or directory".into()),
    };
    h.event(missing());
    assert_eq!(
        h.logged(
            LogLevel::Warn,
            "folder for accepted release v2 is not ready"
        ),
        1
    );
    // Rechecked every 10 s while pending, warned at most once a minute.
    h.at_ms(10_000);
    assert_eq!(
        h.timeout(),
        vec![Action::CheckFolder {
            tag: "v2".into(),
            folder: PathBuf::from("/h/v2")
        }]
    );
    h.event(missing());
    assert_eq!(h.logged(LogLevel::Warn, "not ready"), 1);
    h.at_ms(60_000);
    h.timeout();
    h.event(missing());
    assert_eq!(h.logged(LogLevel::Warn, "not ready"), 2);

    h.at_ms(61_000);
    h.status(Some(("v2", 7)), true);
    // Once stopped, the folder is checked again at once.
    let actions = h.exit(Proc::Core);
    assert_eq!(
        actions,
        vec![Action::CheckFolder {
            tag: "v2".into(),
            folder: PathBuf::from("/h/v2")
        }]
    );
    assert_eq!(h.machine.phase(), Phase::UpgradeWait);
    assert!(h.event(missing()).is_empty());
    assert_eq!(h.logged(LogLevel::Error, "binaries stopped for v2"), 1);
    // Rechecked every second while stopped; an error every 10 s.
    let mut t = 61_000;
    for _ in 0..12 {
        t += 1000;
        h.at_ms(t);
        assert_eq!(h.timeout().len(), 1);
        assert!(h.event(missing()).is_empty());
    }
    assert_eq!(h.logged(LogLevel::Error, "binaries stopped for v2"), 2);
    h.at_ms(t + 1000);
    h.timeout();
    let actions = h.event(ready_folder("v2"));
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(
        spawned(&actions),
        vec![(
            Proc::Core,
            strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "7"])
        )]
    );
}

#[test]
fn version_mismatch_never_switches() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), true);
    h.exit(Proc::Core);
    let actions = h.event(Event::FolderChecked {
        tag: "v2".into(),
        missing: false,
        result: Err("/h/v2/zeta reports version v9, expected v2".into()),
    });
    assert!(actions.is_empty());
    assert_eq!(
        h.logged(LogLevel::Error, "reports version v9, expected v2"),
        1
    );
    assert_eq!(h.machine.phase(), Phase::UpgradeWait);
    // A signal still stops Visor while it waits.
    assert_eq!(
        h.event(Event::SignalReceived(ReceivedSignal::Term)),
        vec![Action::Poll(None), Action::Exit(0)]
    );
}

#[test]
fn a_failed_switch_is_retried() {
    let mut h = Harness::new(fast_config(), false);
    h.switch_result = Err(SwitchError::Failed("rename: Read-only file system".into()));
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    let actions = h.exit(Proc::Core);
    assert!(spawned(&actions).is_empty());
    assert_eq!(h.machine.running_release(), "v1");
    h.switch_result = Ok(());
    h.at_ms(SWITCH_RETRY.as_millis() as u64);
    assert_eq!(spawned(&h.timeout()).len(), 1);
    assert_eq!(h.machine.running_release(), "v2");
}

#[test]
fn ready_for_the_running_release_is_ignored_with_one_warning() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    for _ in 0..5 {
        assert!(h.status(Some(("v1", 7)), true).is_empty());
    }
    assert_eq!(h.logged(LogLevel::Warn, "already running"), 1);
    assert_eq!(h.machine.phase(), Phase::Running);
}

#[test]
fn hostile_tags_are_refused_once_and_never_become_paths() {
    let long = "a".repeat(200);
    for tag in ["../x", "/abs", "..", "", long.as_str(), "v\u{0}2"] {
        let mut h = Harness::new(fast_config(), false);
        h.event(Event::Started);
        for _ in 0..3 {
            let actions = h.status(Some((tag, 7)), true);
            assert!(actions.is_empty(), "{tag:?}: {actions:?}");
        }
        assert_eq!(
            h.logged(LogLevel::Error, "not a safe folder name"),
            1,
            "{tag:?}"
        );
        assert_eq!(h.machine.pending(), None);
    }
}

#[test]
fn upgrade_folders_mapping_is_used() {
    let mut config = fast_config();
    config.upgrade_folders.insert("v2".into(), "second".into());
    let mut h = Harness::new(config, false);
    h.event(Event::Started);
    let actions = h.status(Some(("v2", 1)), false);
    assert_eq!(
        actions[0],
        Action::CheckFolder {
            tag: "v2".into(),
            folder: Path::new("/h/second").to_path_buf()
        }
    );
}

#[test]
fn a_withdrawn_release_is_forgotten() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 1)), false);
    let actions = h.status(None, false);
    assert!(matches!(
        &actions[..],
        [Action::Poll(Some(Polling { interval, .. }))] if *interval == Duration::from_millis(500)
    ));
    assert_eq!(h.machine.pending(), None);
}

#[test]
fn three_upgrades_in_a_row() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    for (i, tag) in ["v2", "v3", "v4"].into_iter().enumerate() {
        h.status(Some((tag, 100 * (i as u64 + 1))), false);
        h.event(ready_folder(tag));
        h.status(Some((tag, 100 * (i as u64 + 1))), true);
        let actions = h.exit(Proc::Core);
        assert_eq!(spawned(&actions).len(), 1);
        assert_eq!(h.machine.running_release(), tag);
        h.status(None, false);
    }
    assert_eq!(h.machine.upgrades(), 3);
}

#[test]
fn spawn_failure_counts_as_a_crash() {
    let mut h = Harness::new(fast_config(), false);
    h.machine.handle(h.now, Event::Started);
    // Drive by hand so the spawn can fail.
    let mut actions = Vec::new();
    while let Some(action) = h.machine.poll_action() {
        actions.push(action);
    }
    assert!(actions.iter().any(|a| matches!(a, Action::Spawn { .. })));
    let actions = h.event(Event::SpawnFailed {
        proc: Proc::Core,
        error: "/h/v1/zeta: No such file or directory".into(),
    });
    assert_eq!(h.machine.restarts(), 1);
    assert_eq!(h.machine.phase(), Phase::RestartWait);
    assert!(signals(&actions).is_empty());
}

#[test]
fn exit_of_an_unknown_pid_is_a_nop() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let actions = h.event(Event::ChildExited {
        proc: Proc::Core,
        pid: 9999,
        status: "exit status 0".into(),
    });
    assert!(actions.is_empty());
    assert_eq!(h.machine.phase(), Phase::Running);
}

#[test]
fn a_signal_while_stopping_after_a_failure_keeps_exit_status_1() {
    let config = Config {
        max_restarts: 0,
        ..fast_config()
    };
    let mut h = Harness::new(config, true);
    h.event(Event::Started);
    h.exit(Proc::Core);
    h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(h.exit(Proc::DataNode), vec![Action::Exit(1)]);
}

fn auto_install_config(prefetch: bool) -> Config {
    let mut config = fast_config();
    config.auto_install.enabled = true;
    config.auto_install.prefetch = prefetch;
    config
}

fn folder_missing(tag: &str) -> Event {
    Event::FolderChecked {
        tag: tag.into(),
        missing: true,
        result: Err(format!("/h/{tag}: no such folder")),
    }
}

fn installs(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::StartInstall { .. }))
        .count()
}

#[test]
fn prefetch_installs_when_the_release_is_accepted() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("v2", 9)), false);
    let actions = h.event(folder_missing("v2"));
    assert_eq!(
        actions,
        vec![Action::StartInstall {
            tag: "v2".into(),
            folder: PathBuf::from("/h/v2"),
            template: Box::new(run_config("v1", false)),
        }]
    );
    assert_eq!(h.machine.pending(), Some(("v2", 9, false)));
    h.event(Event::InstallFinished {
        tag: "v2".into(),
        result: Ok(checked("v2", false)),
    });
    assert_eq!(h.machine.pending(), Some(("v2", 9, true)));
    h.status(Some(("v2", 9)), true);
    let actions = h.exit(Proc::Core);
    assert_eq!(installs(&actions), 0);
    assert_eq!(
        spawned(&actions),
        vec![(
            Proc::Core,
            strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "9"])
        )]
    );
}

#[test]
fn the_upgrade_waits_for_a_running_install() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("v2", 9)), false);
    h.event(folder_missing("v2"));
    h.status(Some(("v2", 9)), true);
    let actions = h.exit(Proc::Core);
    assert!(
        actions.is_empty(),
        "no second install, no switch: {actions:?}"
    );
    assert_eq!(h.machine.phase(), Phase::UpgradeWait);
    let actions = h.event(Event::InstallFinished {
        tag: "v2".into(),
        result: Ok(checked("v2", false)),
    });
    assert_eq!(spawned(&actions).len(), 1);
    assert_eq!(h.machine.running_release(), "v2");
}

#[test]
fn without_prefetch_the_install_starts_at_the_upgrade_block() {
    let mut h = Harness::new(auto_install_config(false), false);
    h.event(Event::Started);
    h.status(Some(("v2", 9)), false);
    assert_eq!(installs(&h.event(folder_missing("v2"))), 0);
    assert_eq!(h.logged(LogLevel::Info, "auto-install will provide it"), 1);
    assert_eq!(h.logged(LogLevel::Warn, "not ready"), 0);
    h.status(Some(("v2", 9)), true);
    let actions = h.exit(Proc::Core);
    assert_eq!(
        actions,
        vec![Action::CheckFolder {
            tag: "v2".into(),
            folder: PathBuf::from("/h/v2")
        }]
    );
    assert_eq!(installs(&h.event(folder_missing("v2"))), 1);
}

#[test]
fn a_failed_prefetch_is_retried_with_backoff_then_once_more_at_the_block() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("v2", 9)), false);
    let mut t = 0;
    let mut attempts = 0;
    // Drive rechecks for a long time: installs happen only when the backoff allows.
    let mut install_times = Vec::new();
    let mut actions = h.event(folder_missing("v2"));
    for _ in 0..200 {
        if installs(&actions) > 0 {
            attempts += 1;
            install_times.push(t);
            actions = h.event(Event::InstallFinished {
                tag: "v2".into(),
                result: Err("HTTP 502 from https://api.github.com".into()),
            });
            continue;
        }
        if actions
            .iter()
            .any(|a| matches!(a, Action::CheckFolder { .. }))
        {
            actions = h.event(folder_missing("v2"));
            continue;
        }
        t += 10_000;
        h.at_ms(t);
        actions = h.timeout();
    }
    assert_eq!(attempts, PREFETCH_ATTEMPTS as usize, "{install_times:?}");
    // Gaps grow: 15 s, 30 s, 60 s (rounded up to the 10 s recheck).
    let gaps: Vec<u64> = install_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, vec![20_000, 30_000, 60_000]);
    assert_eq!(
        h.logged(LogLevel::Error, "install of v2 failed (attempt 4)"),
        1
    );
    assert_eq!(
        h.logged(LogLevel::Error, "no more attempts before the upgrade block"),
        1
    );

    // At the block: tried once more at once.
    h.status(Some(("v2", 9)), true);
    let actions = h.exit(Proc::Core);
    assert_eq!(
        actions,
        vec![Action::CheckFolder {
            tag: "v2".into(),
            folder: PathBuf::from("/h/v2")
        }]
    );
    assert_eq!(installs(&h.event(folder_missing("v2"))), 1);
}

#[test]
fn a_broken_existing_folder_is_not_overwritten_by_an_install() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("v2", 9)), false);
    let actions = h.event(Event::FolderChecked {
        tag: "v2".into(),
        missing: false,
        result: Err("/h/v2/zeta reports version v9, expected v2".into()),
    });
    assert_eq!(installs(&actions), 0);
}

#[test]
fn status_line_and_counters_follow_the_state() {
    let mut h = Harness::new(fast_config(), false);
    assert_eq!(h.machine.status_line(), "starting");
    h.event(Event::Started);
    assert_eq!(h.machine.status_line(), "starting v1");
    h.status(None, false);
    assert_eq!(h.machine.status_line(), "running v1");
    h.exit(Proc::Core);
    assert_eq!(h.machine.status_line(), "restarting 1/3");
    assert_eq!(h.machine.restarts_total(), 1);
    h.at_ms(5000);
    h.timeout();
    h.status(Some(("v2", 77)), false);
    assert_eq!(
        h.machine.status_line(),
        "running v1; upgrade v2 accepted at 77"
    );
    h.at_ms(6000);
    h.status(Some(("v2", 77)), true);
    assert_eq!(h.machine.status_line(), "upgrading to v2: stopping v1");
    h.exit(Proc::Core);
    assert_eq!(h.machine.status_line(), "upgrading to v2");
    h.event(folder_missing("v2"));
    assert_eq!(
        h.machine.status_line(),
        "upgrading to v2: waiting for its folder"
    );
    h.at_ms(6000 + FOLDER_RECHECK_WAITING.as_millis() as u64);
    h.timeout();
    h.event(ready_folder("v2"));
    assert_eq!(h.machine.status_line(), "starting v2");
    assert_eq!(h.machine.last_upgrade_downtime(), None);
    h.at_ms(7350);
    h.status(None, false);
    assert_eq!(
        h.machine.last_upgrade_downtime(),
        Some(Duration::from_millis(1350))
    );
    assert_eq!(h.machine.restarts_total(), 1);
    assert!(!h.machine.exiting());
    h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert!(h.machine.exiting());
    assert_eq!(h.machine.status_line(), "stopping");
}

#[test]
fn a_new_version_that_crashes_before_answering_restarts_from_the_snapshot() {
    let mut h = Harness::new(fast_config(), true);
    h.event(Event::Started);
    h.status(Some(("v2", 500)), false);
    h.event(Event::FolderChecked {
        tag: "v2".into(),
        missing: false,
        result: Ok(checked("v2", true)),
    });
    h.status(Some(("v2", 500)), true);
    h.exit(Proc::Core);
    h.exit(Proc::DataNode);
    assert_eq!(h.machine.running_release(), "v2");
    // The new core dies while loading the snapshot: the restart is still its first start.
    h.exit(Proc::Core);
    h.exit(Proc::DataNode);
    h.at_ms(5000);
    let actions = h.timeout();
    assert_eq!(
        spawned(&actions)[0],
        (
            Proc::Core,
            strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "500"])
        )
    );
    // Once it answers, the mark goes and later restarts ask the data node as usual.
    let actions = h.status(None, false);
    assert!(actions.contains(&Action::ClearUpgradeMark));
    h.exit(Proc::Core);
    h.exit(Proc::DataNode);
    h.at_ms(10_000);
    assert!(matches!(&h.timeout()[..], [Action::QuerySegment { .. }]));
}

#[test]
fn an_unfinished_upgrade_found_at_start_loads_the_snapshot() {
    let mut h = Harness::new(fast_config(), false);
    h.machine = std::mem::replace(
        &mut h.machine,
        Machine::new(fast_config(), PathBuf::from("/h"), run_config("v1", false)),
    )
    .with_unfinished_upgrade(77);
    let actions = h.event(Event::Started);
    assert_eq!(
        spawned(&actions),
        vec![(
            Proc::Core,
            strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "77"])
        )]
    );
    assert!(h.status(None, false).contains(&Action::ClearUpgradeMark));
}

// ----- hostile review: a flapping core, a changed folder, lingering process groups -----

fn checks(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CheckFolder { tag, .. } => Some(tag.clone()),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CancelInstall { tag } => Some(tag.clone()),
            _ => None,
        })
        .collect()
}

/// A core that answers A, B, nothing, A, ... at every poll for ten minutes, with a release
/// server that never has the asset: installs stay few, one at a time, superseded ones are
/// cancelled, and at most one folder check runs at any moment.
#[test]
fn a_flapping_core_cannot_start_installs_without_limit() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    let answers = [Some(("vA", 50)), Some(("vB", 60)), None];
    let mut started: Vec<String> = Vec::new();
    let mut check_in_flight: Option<String> = None;
    let mut install_in_flight: Option<String> = None;
    let mut cancelled: Vec<String> = Vec::new();
    // One poll every 100 ms; the workers answer within the next poll.
    for poll in 0..6000u64 {
        h.at_ms(poll * 100);
        let mut actions = h.status(answers[(poll % 3) as usize], false);
        actions.extend(h.timeout());
        for tag in checks(&actions) {
            assert!(check_in_flight.is_none(), "two checks at once");
            check_in_flight = Some(tag);
        }
        for action in &actions {
            if let Action::StartInstall { tag, .. } = action {
                assert!(install_in_flight.is_none(), "two installs at once");
                install_in_flight = Some(tag.clone());
                started.push(tag.clone());
            }
        }
        cancelled.extend(cancels(&actions));
        h.at_ms(poll * 100 + 50);
        if let Some(tag) = check_in_flight.take() {
            let mut more = h.event(folder_missing(&tag));
            more.extend(h.timeout());
            for action in &more {
                if let Action::StartInstall { tag, .. } = action {
                    assert!(install_in_flight.is_none(), "two installs at once");
                    install_in_flight = Some(tag.clone());
                    started.push(tag.clone());
                }
            }
            check_in_flight = checks(&more).pop();
        }
        if let Some(tag) = install_in_flight.take() {
            let more = h.event(Event::InstallFinished {
                tag: tag.clone(),
                result: Err(format!("{tag}: 404 Not Found")),
            });
            check_in_flight = check_in_flight.or(checks(&more).pop());
        }
    }
    // Per tag: PREFETCH_ATTEMPTS at most, whatever the flapping.
    for tag in ["vA", "vB"] {
        let n = started.iter().filter(|t| *t == tag).count();
        assert!(
            n <= PREFETCH_ATTEMPTS as usize,
            "{tag}: {n} installs in ten minutes"
        );
    }
    assert!(started.len() >= 2, "installs were tried: {started:?}");
    assert!(cancelled.len() <= started.len(), "{cancelled:?}");
}

#[test]
fn a_superseded_install_is_cancelled_and_the_next_waits_for_it_to_end() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("vA", 50)), false);
    assert_eq!(installs(&h.event(folder_missing("vA"))), 1);
    // The core now accepts vB: vA's install is cancelled, vB's folder checked.
    let actions = h.status(Some(("vB", 60)), false);
    assert_eq!(cancels(&actions), vec!["vA".to_string()]);
    assert_eq!(checks(&actions), vec!["vB".to_string()]);
    // vB is missing too, but vA's worker has not ended: no second install yet.
    h.at_ms(INSTALL_SPACING.as_millis() as u64);
    assert_eq!(installs(&h.event(folder_missing("vB"))), 0);
    // vA's worker ends (cancelled): vB's folder is checked again and installed.
    let actions = h.event(Event::InstallFinished {
        tag: "vA".into(),
        result: Err("cancelled".into()),
    });
    assert_eq!(checks(&actions), vec!["vB".to_string()]);
    assert_eq!(installs(&h.event(folder_missing("vB"))), 1);
    // A withdrawn release cancels its install too.
    assert_eq!(cancels(&h.status(None, false)), vec!["vB".to_string()]);
}

#[test]
fn install_attempts_of_a_tag_survive_its_withdrawal() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    let mut t = 0;
    for attempt in 1..=PREFETCH_ATTEMPTS + 2 {
        h.at_ms(t);
        h.status(None, false);
        h.status(Some(("vA", 50)), false);
        let actions = h.event(folder_missing("vA"));
        if attempt <= PREFETCH_ATTEMPTS {
            assert_eq!(installs(&actions), 1, "attempt {attempt}");
            h.event(Event::InstallFinished {
                tag: "vA".into(),
                result: Err("404".into()),
            });
        } else {
            assert_eq!(installs(&actions), 0, "attempt {attempt}: budget spent");
        }
        t += INSTALL_BACKOFF_MAX.as_millis() as u64 + 1;
    }
}

#[test]
fn folder_checks_run_one_at_a_time_and_a_queued_one_follows() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    assert_eq!(checks(&h.status(Some(("vA", 50)), false)), vec!["vA"]);
    assert!(checks(&h.status(Some(("vB", 60)), false)).is_empty());
    assert!(checks(&h.status(Some(("vA", 50)), false)).is_empty());
    // vA's first check ends: its answer may be stale, so the queued one runs for vA.
    let actions = h.event(ready_folder("vA"));
    assert_eq!(checks(&actions), vec!["vA"]);
    assert_eq!(h.machine.pending(), Some(("vA", 50, false)));
    h.event(ready_folder("vA"));
    assert_eq!(h.machine.pending(), Some(("vA", 50, true)));
}

#[test]
fn a_thread_that_cannot_start_is_a_failed_check_not_a_hang() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    // The coordinator feeds this event when the visor-check thread cannot be created.
    h.event(Event::FolderChecked {
        tag: "v2".into(),
        missing: false,
        result: Err(
            "cannot start the visor-check thread (Resource temporarily unavailable)".into(),
        ),
    });
    assert_eq!(h.logged(LogLevel::Warn, "visor-check thread"), 1);
    h.at_ms(FOLDER_RECHECK_PENDING.as_millis() as u64);
    assert_eq!(checks(&h.timeout()), vec!["v2"]);
}

#[test]
fn a_folder_changed_after_its_check_is_checked_again_before_the_switch() {
    let mut h = Harness::new(fast_config(), false);
    h.switch_result = Err(SwitchError::FolderChanged(
        "/h/v2/zeta: replaced or modified since it was checked".into(),
    ));
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    let actions = h.exit(Proc::Core);
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(checks(&actions), vec!["v2"], "full check again");
    assert!(spawned(&actions).is_empty());
    assert_eq!(h.logged(LogLevel::Warn, "changed since it was checked"), 1);
    // The new check finds the folder gone: the binaries wait, as for a missing folder.
    h.switch_result = Ok(());
    assert!(h.event(folder_missing("v2")).is_empty());
    assert_eq!(h.machine.phase(), Phase::UpgradeWait);
    assert_eq!(h.logged(LogLevel::Error, "binaries stopped for v2"), 1);
    // It comes back whole: switched and started from the upgrade block.
    h.at_ms(FOLDER_RECHECK_WAITING.as_millis() as u64);
    assert_eq!(checks(&h.timeout()), vec!["v2"]);
    let actions = h.event(ready_folder("v2"));
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(spawned(&actions).len(), 1);
    assert_eq!(h.machine.running_release(), "v2");
}

fn group_signals(actions: &[Action]) -> Vec<(u32, StopSignal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalGroup { pgid, signal } => Some((*pgid, *signal)),
            _ => None,
        })
        .collect()
}

fn stray_signals(actions: &[Action]) -> Vec<(u32, u64, StopSignal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalProcess {
                pid,
                start_time,
                signal,
            } => Some((*pid, *start_time, *signal)),
            _ => None,
        })
        .collect()
}

#[test]
fn descendants_outside_the_group_get_sigterm_with_the_node_and_sigkill_at_the_deadline() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let core = h.pid(Proc::Core);
    h.strays = vec![Stray {
        pid: 900,
        start_time: 55,
        tree: core,
    }];
    // The stop looks for the core's descendants as it sends SIGTERM to its group.
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(signals(&actions), vec![(Proc::Core, StopSignal::Term)]);
    assert_eq!(h.probes, vec![vec![core]]);
    assert_eq!(stray_signals(&actions), vec![(900, 55, StopSignal::Term)]);
    // The core leaves; the stray, still found, gets no second SIGTERM and holds the exit.
    let actions = h.exit(Proc::Core);
    assert!(stray_signals(&actions).is_empty());
    assert!(!actions.contains(&Action::Exit(0)));
    h.at_ms(GROUP_PROBE_PERIOD.as_millis() as u64);
    assert!(stray_signals(&h.timeout()).is_empty());
    // At the kill deadline: SIGKILL by pid and start time, then the exit.
    h.at_ms(fast_config().stop_signal_timeout.as_millis() as u64);
    let actions = h.timeout();
    assert_eq!(stray_signals(&actions), vec![(900, 55, StopSignal::Kill)]);
    assert!(actions.contains(&Action::Exit(0)));
}

#[test]
fn a_stray_that_leaves_on_sigterm_lets_the_restart_go_on() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let core = h.pid(Proc::Core);
    // The core crashed and left a process outside its group (found as an orphan).
    h.strays = vec![Stray {
        pid: 901,
        start_time: 60,
        tree: core,
    }];
    let actions = h.exit(Proc::Core);
    assert_eq!(stray_signals(&actions), vec![(901, 60, StopSignal::Term)]);
    assert_eq!(
        h.machine.phase(),
        Phase::Stopping,
        "the restart waits for it"
    );
    h.strays.clear();
    h.at_ms(GROUP_PROBE_PERIOD.as_millis() as u64);
    let actions = h.timeout();
    assert!(
        stray_signals(&actions).is_empty(),
        "no SIGKILL: {actions:?}"
    );
    assert_eq!(h.machine.phase(), Phase::RestartWait);
}

#[test]
fn no_process_is_signalled_by_pid_unless_a_probe_found_it() {
    let mut h = Harness::new(fast_config(), true);
    h.event(Event::Started);
    let mut all = h.event(Event::SignalReceived(ReceivedSignal::Term));
    all.extend(h.exit(Proc::Core));
    all.extend(h.exit(Proc::DataNode));
    assert!(stray_signals(&all).is_empty());
    assert!(all.contains(&Action::Exit(0)));
}

#[test]
fn helpers_of_a_crashed_core_are_stopped_before_the_restart() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let core = h.pid(Proc::Core);
    h.alive_groups = vec![core];
    let actions = h.exit(Proc::Core);
    assert_eq!(h.probes, vec![vec![core]]);
    assert_eq!(group_signals(&actions), vec![(core, StopSignal::Term)]);
    assert_eq!(
        h.machine.phase(),
        Phase::Stopping,
        "restart waits for the group"
    );
    // Probed again every GROUP_PROBE_PERIOD; still there after the stop timeout: SIGKILL.
    h.at_ms(GROUP_PROBE_PERIOD.as_millis() as u64);
    assert!(group_signals(&h.timeout()).is_empty());
    assert_eq!(h.probes.len(), 2);
    h.at_ms(fast_config().stop_signal_timeout.as_millis() as u64);
    let actions = h.timeout();
    assert_eq!(group_signals(&actions), vec![(core, StopSignal::Kill)]);
    assert_eq!(h.machine.phase(), Phase::RestartWait);
    h.at_ms((fast_config().stop_signal_timeout + fast_config().restarts_delay).as_millis() as u64);
    assert_eq!(spawned(&h.timeout()).len(), 1);
}

#[test]
fn helpers_that_leave_on_sigterm_let_the_restart_go_on() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let core = h.pid(Proc::Core);
    h.alive_groups = vec![core];
    h.exit(Proc::Core);
    h.alive_groups.clear();
    h.at_ms(GROUP_PROBE_PERIOD.as_millis() as u64);
    let actions = h.timeout();
    assert!(
        group_signals(&actions).is_empty(),
        "no SIGKILL: {actions:?}"
    );
    assert_eq!(h.machine.phase(), Phase::RestartWait);
}

#[test]
fn an_empty_group_costs_no_wait_at_the_upgrade_block() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    // One look at the stop (for descendants outside the group), one at the exit.
    assert_eq!(h.probes.len(), 1);
    let actions = h.exit(Proc::Core);
    assert_eq!(h.probes.len(), 2);
    assert!(group_signals(&actions).is_empty());
    assert_eq!(
        spawned(&actions).len(),
        1,
        "switched and started in the same turn"
    );
}

#[test]
fn helpers_left_at_exit_are_stopped_before_visor_exits() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    let core = h.pid(Proc::Core);
    h.event(Event::SignalReceived(ReceivedSignal::Term));
    h.alive_groups = vec![core];
    let actions = h.exit(Proc::Core);
    assert_eq!(group_signals(&actions), vec![(core, StopSignal::Term)]);
    assert!(!actions.contains(&Action::Exit(0)));
    h.alive_groups.clear();
    h.at_ms(GROUP_PROBE_PERIOD.as_millis() as u64);
    assert_eq!(h.timeout(), vec![Action::Exit(0)]);
}

#[test]
fn a_stop_during_an_install_cancels_it_before_the_exit() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("v2", 9)), false);
    assert_eq!(installs(&h.event(folder_missing("v2"))), 1);
    h.event(Event::SignalReceived(ReceivedSignal::Term));
    let actions = h.exit(Proc::Core);
    assert_eq!(
        actions,
        vec![Action::CancelInstall { tag: "v2".into() }, Action::Exit(0)]
    );
}

// ----- operator requests: restart and switch -----

fn replies(actions: &[Action]) -> Vec<ControlReply> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ControlReply { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

fn control(h: &mut Harness, id: u64, request: ControlRequest) -> Vec<Action> {
    h.event(Event::ControlReceived { id, request })
}

/// Asks for a restart and answers the re-read of current's run-config with `run`.
fn restart_with(h: &mut Harness, id: u64, run: RunConfig) -> Vec<Action> {
    let actions = control(h, id, ControlRequest::Restart);
    assert!(
        actions.contains(&Action::ReadRunConfig {
            folder: PathBuf::from("/h/v1")
        }),
        "{actions:?}"
    );
    assert!(
        signals(&actions).is_empty(),
        "nothing stops before the read"
    );
    h.event(Event::RunConfigRead(Ok(Box::new(run))))
}

fn switch(tag: &str) -> ControlRequest {
    ControlRequest::Switch { tag: tag.into() }
}

#[test]
fn restart_stops_and_starts_again_without_a_snapshot_and_answers_when_the_core_does() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    // The run-config was edited: the restart starts from the edited one.
    let mut edited = run_config("v1", false);
    edited.core.args.push("--verbose".into());
    let actions = restart_with(&mut h, 1, edited);
    assert_eq!(signals(&actions), vec![(Proc::Core, StopSignal::Term)]);
    assert!(matches!(replies(&actions)[..], [ControlReply::Progress(_)]));
    let actions = h.exit(Proc::Core);
    assert_eq!(
        spawned(&actions),
        vec![(Proc::Core, strings(&["start", "--home", "/z", "--verbose"]))],
        "started at once, no snapshot flag"
    );
    assert_eq!(
        h.machine.restarts(),
        0,
        "an operator's restart is not a failure"
    );
    let actions = h.status(None, false);
    assert!(matches!(&replies(&actions)[..], [ControlReply::Done(t)] if t.contains("v1")));
}

#[test]
fn restart_with_a_data_node_starts_from_the_latest_segment() {
    let mut h = Harness::new(fast_config(), true);
    h.event(Event::Started);
    h.status(None, false);
    restart_with(&mut h, 1, run_config("v1", true));
    assert_eq!(h.machine.status_line(), "restarting v1 (operator request)");
    h.exit(Proc::Core);
    let actions = h.exit(Proc::DataNode);
    assert_eq!(h.machine.status_line(), "restarting v1 (operator request)");
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::QuerySegment { .. })));
    let actions = h.event(Event::SegmentQueried(Ok(Some(900))));
    assert_eq!(
        spawned(&actions)[0].1,
        strings(&["start", "--home", "/z", SNAPSHOT_FLAG, "900"])
    );
}

#[test]
fn switch_checks_the_folder_before_anything_stops() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    let actions = control(&mut h, 7, switch("v1.0.1"));
    assert!(
        signals(&actions).is_empty(),
        "nothing stops before the check"
    );
    assert!(actions.contains(&Action::CheckSwitchFolder {
        tag: "v1.0.1".into(),
        folder: PathBuf::from("/h/v1.0.1")
    }));
    // Not ready: refused, nothing stopped, the node still runs.
    let actions = h.event(Event::SwitchFolderChecked {
        tag: "v1.0.1".into(),
        result: Err("v1.0.1/zeta reports version v1.0.0".into()),
    });
    assert!(signals(&actions).is_empty());
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Refused(t)] if t.contains("nothing was stopped"))
    );
    assert_eq!(h.machine.phase(), Phase::Running);
    // Ready: stop, switch, start without the snapshot flag, done when it answers.
    control(&mut h, 8, switch("v1.0.1"));
    let actions = h.event(Event::SwitchFolderChecked {
        tag: "v1.0.1".into(),
        result: Ok(checked("v1.0.1", false)),
    });
    assert_eq!(signals(&actions), vec![(Proc::Core, StopSignal::Term)]);
    assert_eq!(h.machine.status_line(), "switching to v1.0.1: stopping v1");
    let actions = h.exit(Proc::Core);
    assert_eq!(actions[0], switch_to("v1.0.1"));
    assert_eq!(
        spawned(&actions),
        vec![(Proc::Core, strings(&["start", "--home", "/z"]))]
    );
    assert_eq!(h.machine.running_release(), "v1.0.1");
    let actions = h.status(None, false);
    assert!(matches!(&replies(&actions)[..], [ControlReply::Done(_)]));
    assert_eq!(
        h.logged(LogLevel::Info, "switch: v1.0.1 is answering; downtime"),
        1
    );
}

#[test]
fn a_switch_folder_changed_before_the_switch_restarts_the_old_version() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    control(&mut h, 1, switch("v1.0.1"));
    h.event(Event::SwitchFolderChecked {
        tag: "v1.0.1".into(),
        result: Ok(checked("v1.0.1", false)),
    });
    h.switch_result = Err(SwitchError::FolderChanged(
        "/h/v1.0.1/zeta: replaced".into(),
    ));
    let actions = h.exit(Proc::Core);
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Failed(t)] if t.contains("v1 was started again"))
    );
    assert_eq!(spawned(&actions).len(), 1);
    assert_eq!(h.machine.running_release(), "v1");
}

#[test]
fn requests_are_refused_during_an_upgrade_and_while_another_runs() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    restart_with(&mut h, 1, run_config("v1", false));
    let actions = control(&mut h, 2, switch("v1.0.1"));
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Refused(t)] if t.contains("under way"))
    );
    h.exit(Proc::Core);
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    for request in [ControlRequest::Restart, switch("v1.0.1")] {
        let actions = control(&mut h, 3, request);
        assert!(
            matches!(&replies(&actions)[..], [ControlReply::Refused(t)] if t.contains("upgrade to v2")),
            "{actions:?}"
        );
    }
    assert!(matches!(
        &replies(&control(&mut h, 4, switch("v1")))[..],
        [ControlReply::Refused(_)]
    ));
}

#[test]
fn a_signal_ends_a_request_under_way_with_a_failure() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    restart_with(&mut h, 1, run_config("v1", false));
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert!(matches!(&replies(&actions)[..], [ControlReply::Failed(t)] if t.contains("SIGTERM")));
}

#[test]
fn after_an_upgrade_polling_is_fast_until_the_new_core_answers() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    let actions = h.exit(Proc::Core);
    let interval = |actions: &[Action]| {
        actions.iter().find_map(|a| match a {
            Action::Poll(Some(p)) => Some(p.interval),
            _ => None,
        })
    };
    assert_eq!(
        interval(&actions),
        Some(fast_config().upgrade_poll_interval)
    );
    let actions = h.status(None, false);
    assert_eq!(interval(&actions), Some(fast_config().status_poll_interval));
}

#[test]
fn a_restart_whose_run_config_cannot_be_used_stops_nothing() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(None, false);
    control(&mut h, 1, ControlRequest::Restart);
    let actions = h.event(Event::RunConfigRead(Err(
        "/h/v1/run-config.toml:3: unknown key \"pth\"".into(),
    )));
    assert!(signals(&actions).is_empty());
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Refused(t)] if t.contains("nothing was stopped"))
    );
    assert_eq!(h.machine.phase(), Phase::Running);
}

// ----- hooks -----

fn hook_config() -> Config {
    let mut config = fast_config();
    config.hooks.on_accepted = Some(strings(&["/hooks/accepted"]));
    config.hooks.before_switch = Some(strings(&["/hooks/before"]));
    config.hooks.after_upgrade = Some(strings(&["/hooks/after"]));
    config
}

/// A hook's id, kind and environment.
type HookOrder = (u64, HookKind, Vec<(String, String)>);

fn hooks_run(actions: &[Action]) -> Vec<HookOrder> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunHook { id, kind, env, .. } => Some((*id, *kind, env.clone())),
            _ => None,
        })
        .collect()
}

fn env_of(env: &[(String, String)], key: &str) -> String {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[test]
fn the_three_hooks_run_in_order_with_their_environment() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    let actions = h.event(ready_folder("v2"));
    let accepted = hooks_run(&actions);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].1, HookKind::OnAccepted);
    assert_eq!(env_of(&accepted[0].2, "VISOR_EVENT"), "onAccepted");
    assert_eq!(env_of(&accepted[0].2, "VISOR_RELEASE"), "v2");
    assert_eq!(env_of(&accepted[0].2, "VISOR_HEIGHT"), "7");
    assert_eq!(env_of(&accepted[0].2, "VISOR_FOLDER"), "/h/v2");
    assert_eq!(env_of(&accepted[0].2, "VISOR_PREVIOUS_RELEASE"), "v1");
    // Off the critical path: the check of a re-accepted release does not run it again.
    h.status(Some(("v2", 7)), true);
    let actions = h.exit(Proc::Core);
    let before = hooks_run(&actions);
    assert_eq!(before.len(), 1, "{actions:?}");
    assert_eq!(before[0].1, HookKind::BeforeSwitch);
    assert_eq!(env_of(&before[0].2, "VISOR_EVENT"), "beforeSwitch");
    assert!(
        spawned(&actions).is_empty(),
        "the switch waits for beforeSwitch"
    );
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::SwitchCurrent { .. })));
    let actions = h.event(Event::HookFinished {
        id: before[0].0,
        kind: HookKind::BeforeSwitch,
        result: Ok(()),
    });
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(spawned(&actions).len(), 1);
    let actions = h.status(None, false);
    let after = hooks_run(&actions);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, HookKind::AfterUpgrade);
    assert_eq!(env_of(&after[0].2, "VISOR_RELEASE"), "v2");
    assert_eq!(env_of(&after[0].2, "VISOR_PREVIOUS_RELEASE"), "v1");
    assert_eq!(env_of(&after[0].2, "VISOR_EVENT"), "afterUpgrade");
}

#[test]
fn a_failing_before_switch_blocks_and_a_fixed_config_lets_the_upgrade_go_on() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    let id = hooks_run(&h.exit(Proc::Core))[0].0;
    let actions = h.event(Event::HookFinished {
        id,
        kind: HookKind::BeforeSwitch,
        result: Err("exit status 3".into()),
    });
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(
        h.logged(LogLevel::Error, "hook beforeSwitch failed (exit status 3)"),
        1
    );
    assert_eq!(h.machine.phase(), Phase::UpgradeWait);
    assert_eq!(
        h.machine.hook_status().1.as_deref(),
        Some("beforeSwitch: exit status 3")
    );
    // 10 s later it runs again, and fails again.
    h.at_ms(HOOK_RETRY.as_millis() as u64);
    let again = hooks_run(&h.timeout());
    assert_eq!(again.len(), 1);
    h.event(Event::HookFinished {
        id: again[0].0,
        kind: HookKind::BeforeSwitch,
        result: Err("exit status 3".into()),
    });
    assert_eq!(h.logged(LogLevel::Error, "hook beforeSwitch failed"), 2);
    // The operator removes the hook: the next retry switches without it.
    let mut fixed = hook_config();
    fixed.hooks.before_switch = None;
    h.event(Event::ConfigReloaded(Ok(Box::new(fixed))));
    h.at_ms(2 * HOOK_RETRY.as_millis() as u64);
    let actions = h.timeout();
    assert!(hooks_run(&actions).is_empty());
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(h.machine.running_release(), "v2");
}

#[test]
fn failing_accepted_and_after_upgrade_hooks_change_nothing() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    let id = hooks_run(&h.event(ready_folder("v2")))[0].0;
    assert!(h
        .event(Event::HookFinished {
            id,
            kind: HookKind::OnAccepted,
            result: Err("killed by SIGKILL".into()),
        })
        .is_empty());
    assert_eq!(h.machine.pending(), Some(("v2", 7, true)));
    assert_eq!(h.logged(LogLevel::Error, "the upgrade is not affected"), 1);
}

fn hook_done(id: u64, kind: HookKind, result: Result<(), String>) -> Event {
    Event::HookFinished { id, kind, result }
}

/// A core that flips between releases while a slow `onAccepted` runs: nothing else starts
/// beside it, the next start comes 15 s after the last, and only for the release the core
/// accepts then (the latest checked; the one in between never runs).
#[test]
fn on_accepted_runs_one_at_a_time_for_the_latest_release_at_most_every_15_s() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    h.status(Some(("vA", 10)), false);
    let first = hooks_run(&h.event(folder_missing("vA")));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, HookKind::OnAccepted);
    for (at, tag) in [(100, "vB"), (200, "vC")] {
        h.at_ms(at);
        h.status(Some((tag, 20)), false);
        assert!(hooks_run(&h.event(folder_missing(tag))).is_empty(), "{tag}");
    }
    // vA's hook ends after 2 s: too early for the next.
    h.at_ms(2_000);
    assert!(hooks_run(&h.event(hook_done(first[0].0, HookKind::OnAccepted, Ok(())))).is_empty());
    let spacing = ACCEPTED_SPACING.as_millis() as u64;
    h.at_ms(spacing - 1);
    assert!(hooks_run(&h.timeout()).is_empty());
    h.at_ms(spacing);
    let next = hooks_run(&h.timeout());
    assert_eq!(next.len(), 1);
    assert_eq!(env_of(&next[0].2, "VISOR_RELEASE"), "vC");
    assert_eq!(env_of(&next[0].2, "VISOR_HEIGHT"), "20");
}

/// The release waiting for a running `onAccepted` starts when that one ends (its 15 s have
/// passed), and not at all once the core no longer accepts it.
#[test]
fn a_waiting_on_accepted_starts_after_the_running_one_only_if_still_accepted() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    h.status(Some(("vA", 10)), false);
    let a = hooks_run(&h.event(folder_missing("vA")))[0].0;
    h.at_ms(100);
    h.status(Some(("vB", 20)), false);
    assert!(hooks_run(&h.event(folder_missing("vB"))).is_empty());
    // vA's hook runs for 20 s; vB is still accepted when it ends: vB starts at once.
    h.at_ms(20_000);
    let b = hooks_run(&h.event(hook_done(a, HookKind::OnAccepted, Ok(()))));
    assert_eq!(b.len(), 1);
    assert_eq!(env_of(&b[0].2, "VISOR_RELEASE"), "vB");
    // vC waits for vB's hook, then the core withdraws it: it never runs.
    h.at_ms(20_100);
    h.status(Some(("vC", 30)), false);
    assert!(hooks_run(&h.event(folder_missing("vC"))).is_empty());
    h.at_ms(20_200);
    h.status(None, false);
    h.at_ms(21_000);
    assert!(hooks_run(&h.event(hook_done(b[0].0, HookKind::OnAccepted, Ok(())))).is_empty());
    h.at_ms(60_000);
    assert!(hooks_run(&h.timeout()).is_empty());
    // Accepted again later, vC was never hooked: it runs now.
    h.status(Some(("vC", 30)), false);
    let c = hooks_run(&h.event(folder_missing("vC")));
    assert_eq!(c.len(), 1);
    assert_eq!(env_of(&c[0].2, "VISOR_RELEASE"), "vC");
}

/// Before: the 257th release made the first one forgotten, so a core cycling through more
/// than 256 releases re-ran `onAccepted` for each forever. Now the memory holds at most
/// [`REMEMBERED_ACCEPTED`] releases and no release gets the hook twice.
#[test]
fn on_accepted_memory_is_bounded_and_no_release_runs_it_twice() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    let tags: Vec<String> = (0..REMEMBERED_ACCEPTED + 44)
        .map(|i| format!("v9.{i}.0"))
        .collect();
    let mut ran: Vec<String> = Vec::new();
    let mut at = 0;
    for _round in 0..2 {
        for tag in &tags {
            at += ACCEPTED_SPACING.as_millis() as u64;
            h.at_ms(at);
            h.status(Some((tag, 100)), false);
            for (id, kind, env) in hooks_run(&h.event(folder_missing(tag))) {
                ran.push(env_of(&env, "VISOR_RELEASE"));
                h.event(hook_done(id, kind, Ok(())));
            }
        }
    }
    let distinct: std::collections::BTreeSet<&String> = ran.iter().collect();
    assert_eq!(distinct.len(), ran.len(), "a release ran onAccepted twice");
    assert_eq!(ran.len(), REMEMBERED_ACCEPTED);
    assert!(h.machine.hooks.remembered_accepted() <= REMEMBERED_ACCEPTED);
    assert_eq!(h.logged(LogLevel::Warn, "the most it remembers"), 1);
}

/// A failed hook shows in the status line (systemd's STATUS=), the status file and the
/// metrics' last outcomes until its next run succeeds; each hook is judged by its own last
/// run.
#[test]
fn a_failed_hook_is_shown_until_its_next_run_succeeds() {
    let mut h = Harness::new(hook_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    assert!(h.machine.hook_last_runs().is_empty());
    let accepted = hooks_run(&h.event(ready_folder("v2")))[0].0;
    h.event(hook_done(accepted, HookKind::OnAccepted, Ok(())));
    h.status(Some(("v2", 7)), true);
    let before = hooks_run(&h.exit(Proc::Core))[0].0;
    h.event(hook_done(
        before,
        HookKind::BeforeSwitch,
        Err("exit status 3".into()),
    ));
    assert_eq!(
        h.machine.status_line(),
        "upgrading to v2; hook beforeSwitch failed: exit status 3"
    );
    assert_eq!(
        h.machine.hook_status().1.as_deref(),
        Some("beforeSwitch: exit status 3")
    );
    assert_eq!(
        h.machine.hook_last_runs(),
        [
            (HookKind::OnAccepted, true),
            (HookKind::BeforeSwitch, false)
        ]
    );
    h.at_ms(HOOK_RETRY.as_millis() as u64);
    let again = hooks_run(&h.timeout())[0].0;
    h.event(hook_done(again, HookKind::BeforeSwitch, Ok(())));
    assert_eq!(h.machine.hook_status().1, None);
    assert_eq!(h.machine.status_line(), "starting v2");
    let after = hooks_run(&h.status(None, false))[0].0;
    h.event(hook_done(
        after,
        HookKind::AfterUpgrade,
        Err("killed by SIGKILL".into()),
    ));
    assert_eq!(
        h.machine.status_line(),
        "running v2; hook afterUpgrade failed: killed by SIGKILL"
    );
    assert_eq!(
        h.machine.hook_last_runs(),
        [
            (HookKind::OnAccepted, true),
            (HookKind::BeforeSwitch, true),
            (HookKind::AfterUpgrade, false)
        ]
    );
}

#[test]
fn without_hooks_nothing_waits() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    h.status(Some(("v2", 7)), false);
    assert!(hooks_run(&h.event(ready_folder("v2"))).is_empty());
    h.status(Some(("v2", 7)), true);
    let actions = h.exit(Proc::Core);
    assert_eq!(actions[0], switch_to("v2"));
}

// ----- what the metrics read -----

#[test]
fn restarts_are_counted_per_process_and_add_up_to_the_total() {
    let config = Config {
        max_restarts: 2,
        ..fast_config()
    };
    let mut h = Harness::new(config, true);
    h.event(Event::Started);
    h.exit(Proc::DataNode);
    h.exit(Proc::Core);
    h.at_ms(5000);
    h.timeout();
    h.event(Event::SegmentQueried(Ok(None)));
    assert_eq!(h.machine.restarts_of(Proc::DataNode), 1);
    assert_eq!(h.machine.restarts_of(Proc::Core), 0);
    // A failed start counts for the process that could not be started.
    h.event(Event::SpawnFailed {
        proc: Proc::DataNode,
        error: "no such file".into(),
    });
    h.exit(Proc::Core);
    h.exit(Proc::DataNode);
    assert_eq!(h.machine.restarts_of(Proc::DataNode), 2);
    h.at_ms(10_000);
    h.timeout();
    h.event(Event::SegmentQueried(Ok(None)));
    // The budget is spent: this exit restarts nothing and counts nowhere.
    h.exit(Proc::Core);
    assert_eq!(h.machine.restarts_of(Proc::Core), 0);
    assert_eq!(h.machine.restarts_of(Proc::DataNode), 2);
    assert_eq!(h.machine.restarts_total(), 2);
}

#[test]
fn only_failed_installs_of_the_pending_release_count_as_failures() {
    let mut h = Harness::new(auto_install_config(true), false);
    h.event(Event::Started);
    h.status(Some(("vA", 50)), false);
    assert_eq!(installs(&h.event(folder_missing("vA"))), 1);
    h.event(Event::InstallFinished {
        tag: "vA".into(),
        result: Err("HTTP 502".into()),
    });
    assert_eq!(h.machine.install_failures(), 1);
    h.at_ms(INSTALL_BACKOFF.as_millis() as u64);
    h.timeout();
    assert_eq!(installs(&h.event(folder_missing("vA"))), 1);
    // Superseded, then cancelled: not a failure.
    h.status(Some(("vB", 60)), false);
    h.event(Event::InstallFinished {
        tag: "vA".into(),
        result: Err("cancelled".into()),
    });
    assert_eq!(h.machine.install_failures(), 1);
}

#[test]
fn core_rpc_up_follows_the_answers_of_the_current_start() {
    let mut h = Harness::new(fast_config(), false);
    h.event(Event::Started);
    assert!(!h.machine.core_rpc_up(), "not answered yet");
    h.status(None, false);
    assert!(h.machine.core_rpc_up());
    h.rpc_error();
    assert!(!h.machine.core_rpc_up());
    h.status(None, false);
    assert!(h.machine.core_rpc_up());
    h.exit(Proc::Core);
    assert!(!h.machine.core_rpc_up(), "restarting");
}

#[test]
fn a_successful_reload_is_timed_and_a_refused_one_is_not() {
    let mut h = Harness::new(Config::default(), false);
    h.event(Event::Started);
    assert_eq!(h.machine.last_reload(), None);
    h.at_ms(1000);
    h.event(Event::ConfigReloaded(Ok(Box::new(Config::default()))));
    assert_eq!(
        h.machine.last_reload(),
        Some(h.base + Duration::from_secs(1))
    );
    h.at_ms(2000);
    h.event(Event::ConfigReloaded(Err(vec!["bad".into()])));
    assert_eq!(
        h.machine.last_reload(),
        Some(h.base + Duration::from_secs(1))
    );
    assert!(h.machine.refused_reload().is_some());
}

// ----- backups -----

fn backup_config(on_failure: OnFailure) -> Config {
    let mut config = hook_config();
    config.hooks.on_accepted = None;
    config.backup = Backup {
        enabled: true,
        paths: vec![PathBuf::from("/var/lib/zeta")],
        folder: Some(PathBuf::from("/backups")),
        on_failure,
        ..Backup::default()
    };
    config
}

/// The backups ordered: id and order.
fn backups_started(actions: &[Action]) -> Vec<(u64, BackupOrder)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartBackup { id, order } => Some((*id, (**order).clone())),
            _ => None,
        })
        .collect()
}

fn backup_checks(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CheckBackup { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn backup_done(id: u64, path: &str) -> Event {
    Event::BackupFinished {
        id,
        result: Ok(Box::new(BackupDone {
            path: PathBuf::from(path),
            files: 3,
            bytes: 4096,
            duration: Duration::from_millis(1500),
            cloned: false,
            removed: vec![PathBuf::from("/backups/v0-to-v1-h3-20260101T000000Z")],
            not_removed: Vec::new(),
        })),
    }
}

fn backup_failed(id: u64) -> Event {
    Event::BackupFinished {
        id,
        result: Err("backup: cannot create the folder /backups/.visor-tmp-backup-1-0 (Read-only file system (os error 30)); check the folder and its file system".into()),
    }
}

fn checked_backup(id: u64, problems: &[&str]) -> Event {
    Event::BackupChecked {
        id,
        problems: strings(problems),
        cost: Some("backups will be copies: about 4.0 KiB".into()),
    }
}

/// Starts Visor with `config`, answers the check of `[backup]` without problems, has the
/// core accept v2 at block 7 with its folder ready, and stops the binaries at the block.
/// The actions of the stop's end.
fn upgrade_to_the_block(h: &mut Harness) -> Vec<Action> {
    let check = backup_checks(&h.event(Event::Started))[0];
    h.event(checked_backup(check, &[]));
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    h.exit(Proc::Core)
}

#[test]
fn the_backup_is_taken_at_the_block_before_before_switch_and_the_hooks_see_it() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let actions = upgrade_to_the_block(&mut h);
    let started = backups_started(&actions);
    assert_eq!(started.len(), 1, "{actions:?}");
    let (id, order) = &started[0];
    assert_eq!(
        (order.from.as_str(), order.to.as_str(), order.reason),
        ("v1", "v2", Reason::Upgrade { height: 7 })
    );
    assert_eq!(order.settings, backup_config(OnFailure::Stop).backup);
    assert!(hooks_run(&actions).is_empty(), "beforeSwitch waits");
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::SwitchCurrent { .. })));
    assert_eq!(h.machine.status_line(), "upgrading to v2: backing up");
    // Progress: a log line and the status.
    let report = Report {
        files: 1,
        files_total: 3,
        bytes: 1024,
        bytes_total: 4096,
        elapsed: Duration::from_secs(5),
        rate: 204.8,
        left: Some(Duration::from_secs(15)),
    };
    h.event(Event::BackupProgress {
        id: *id,
        report: report.clone(),
    });
    assert_eq!(
        h.logged(
            LogLevel::Info,
            "backup: v1-to-v2: 1/3 files, 1.0 KiB/4.0 KiB, 204 B/s, about 15 s left"
        ),
        1
    );
    assert_eq!(
        h.machine.status_line(),
        "upgrading to v2: backing up (1.0 KiB/4.0 KiB, about 15 s left)"
    );
    assert_eq!(
        h.machine.backup_status().running.and_then(|r| r.report),
        Some(&report)
    );
    // Done: beforeSwitch with its path, then the switch.
    let path = "/backups/v1-to-v2-h7-20260101T000000Z";
    let actions = h.event(backup_done(*id, path));
    let before = hooks_run(&actions);
    assert_eq!(before.len(), 1, "{actions:?}");
    assert_eq!(before[0].1, HookKind::BeforeSwitch);
    for (key, value) in [
        ("VISOR_BACKUP", path),
        ("VISOR_REASON", "upgrade"),
        ("VISOR_FROM", "v1"),
        ("VISOR_PREVIOUS_RELEASE", "v1"),
        ("VISOR_RELEASE", "v2"),
        ("VISOR_HEIGHT", "7"),
    ] {
        assert_eq!(env_of(&before[0].2, key), value, "{key}");
    }
    assert_eq!(h.logged(LogLevel::Info, "backup: completed in 1.5 s"), 1);
    assert_eq!(
        h.logged(LogLevel::Info, "backup: removed an older backup"),
        1
    );
    assert_eq!(h.machine.backup_status().last_ok, Some(true));
    assert_eq!(
        h.machine.backup_status().last.map(|l| l.path.clone()),
        Some(PathBuf::from(path))
    );
    let actions = h.event(hook_done(before[0].0, HookKind::BeforeSwitch, Ok(())));
    assert_eq!(actions[0], switch_to("v2"));
    let after = hooks_run(&h.status(None, false));
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, HookKind::AfterUpgrade);
    assert_eq!(env_of(&after[0].2, "VISOR_BACKUP"), path);
    assert_eq!(env_of(&after[0].2, "VISOR_REASON"), "upgrade");
    assert_eq!(env_of(&after[0].2, "VISOR_FROM"), "v1");
}

#[test]
fn a_failed_backup_with_stop_keeps_the_binaries_stopped_and_is_tried_each_minute() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let id = backups_started(&upgrade_to_the_block(&mut h))[0].0;
    let actions = h.event(backup_failed(id));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(h.machine.phase(), Phase::UpgradeWait);
    assert_eq!(
        h.logged(
            LogLevel::Error,
            "upgrade: the backup before the switch to v2 failed: backup: cannot create"
        ),
        1
    );
    assert!(h.machine.status_line().starts_with(
        "upgrading to v2: backup failed, trying again; backup failed: backup: cannot create"
    ));
    assert_eq!(h.machine.backup_status().last_ok, Some(false));
    assert_eq!(h.machine.next_deadline(), Some(h.now + BACKUP_RETRY));
    h.at_ms(BACKUP_RETRY.as_millis() as u64 - 1);
    assert!(h.timeout().is_empty());
    h.at_ms(BACKUP_RETRY.as_millis() as u64);
    let again = backups_started(&h.timeout());
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].0, id);
    assert!(spawned(&h.event(backup_failed(again[0].0))).is_empty());
    assert_eq!(
        h.starts_of_core(),
        1,
        "the old version is never started again"
    );
}

#[test]
fn a_reload_lets_a_failed_backup_go_on_at_once() {
    // Fixed: the backup is tried again at once, not a minute later.
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let id = backups_started(&upgrade_to_the_block(&mut h))[0].0;
    h.event(backup_failed(id));
    h.at_ms(1000);
    let mut fixed = backup_config(OnFailure::Stop);
    fixed.backup.folder = Some(PathBuf::from("/other"));
    let actions = h.event(Event::ConfigReloaded(Ok(Box::new(fixed))));
    let again = backups_started(&actions);
    assert_eq!(again.len(), 1, "{actions:?}");
    assert_eq!(
        again[0].1.settings.folder.as_deref(),
        Some(Path::new("/other"))
    );
    // Turned off: the upgrade goes on at once, without a backup.
    h.event(backup_failed(again[0].0));
    h.at_ms(2000);
    let mut off = backup_config(OnFailure::Stop);
    off.backup.enabled = false;
    let actions = h.event(Event::ConfigReloaded(Ok(Box::new(off))));
    let before = hooks_run(&actions);
    assert_eq!(before.len(), 1, "{actions:?}");
    assert_eq!(env_of(&before[0].2, "VISOR_BACKUP"), "", "no backup");
    assert!(!before[0].2.iter().any(|(k, _)| k == "VISOR_BACKUP"));
    let actions = h.event(hook_done(before[0].0, HookKind::BeforeSwitch, Ok(())));
    assert_eq!(actions[0], switch_to("v2"));
    assert!(
        !h.machine.status_line().contains("backup"),
        "backups off: nothing about them is shown: {}",
        h.machine.status_line()
    );
}

#[test]
fn a_sighup_with_an_unchanged_file_also_retries_a_failed_backup_at_once() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let id = backups_started(&upgrade_to_the_block(&mut h))[0].0;
    h.event(backup_failed(id));
    h.at_ms(500);
    let actions = h.event(Event::ConfigUnchanged);
    assert_eq!(backups_started(&actions).len(), 1, "{actions:?}");
}

#[test]
fn on_failure_continue_warns_and_upgrades_without_a_backup() {
    let mut h = Harness::new(backup_config(OnFailure::Continue), false);
    let id = backups_started(&upgrade_to_the_block(&mut h))[0].0;
    let actions = h.event(backup_failed(id));
    assert_eq!(
        h.logged(
            LogLevel::Warn,
            "upgrading without a backup ([backup] onFailure = \"continue\")"
        ),
        1
    );
    let before = hooks_run(&actions);
    assert_eq!(before.len(), 1);
    assert!(!before[0].2.iter().any(|(k, _)| k == "VISOR_BACKUP"));
    let actions = h.event(hook_done(before[0].0, HookKind::BeforeSwitch, Ok(())));
    assert_eq!(actions[0], switch_to("v2"));
    assert_eq!(h.machine.running_release(), "v2");
}

#[test]
fn no_backup_without_enabled_nor_at_a_crash_restart() {
    // Off: no check, no backup; the upgrade is as before.
    let mut off = backup_config(OnFailure::Stop);
    off.backup.enabled = false;
    let mut h = Harness::new(off, false);
    assert!(backup_checks(&h.event(Event::Started)).is_empty());
    h.status(Some(("v2", 7)), false);
    h.event(ready_folder("v2"));
    h.status(Some(("v2", 7)), true);
    let actions = h.exit(Proc::Core);
    assert!(backups_started(&actions).is_empty());
    assert_eq!(hooks_run(&actions).len(), 1, "beforeSwitch at once");
    // On: a crash and its restart take none.
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    h.event(Event::Started);
    h.status(None, false);
    let mut all = h.exit(Proc::Core);
    h.at_ms(10_000);
    all.extend(h.timeout());
    assert_eq!(spawned(&all).len(), 1, "restarted");
    assert!(backups_started(&all).is_empty());
}

#[test]
fn a_stop_during_a_backup_cancels_it_before_the_exit() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let id = backups_started(&upgrade_to_the_block(&mut h))[0].0;
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert_eq!(
        actions,
        vec![
            Action::Poll(None),
            Action::CancelBackup { id },
            Action::Exit(0)
        ]
    );
    // Its end, after the cancel, changes nothing.
    assert!(h.event(backup_failed(id)).is_empty());
}

#[test]
fn problems_of_backup_are_reported_at_once_while_the_node_starts() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let actions = h.event(Event::Started);
    assert_eq!(
        spawned(&actions).len(),
        1,
        "the node starts whatever [backup] says"
    );
    let check = backup_checks(&actions)[0];
    let problem = "backup.folder: /backups is on a read-only file system for Visor";
    h.event(checked_backup(
        check,
        &[problem, "backup.paths[0]: /var/lib/zeta does not exist"],
    ));
    assert_eq!(h.logged(LogLevel::Error, &format!("backup: {problem}")), 1);
    assert_eq!(
        h.machine.status_line(),
        format!("starting v1; backup problem: {problem} (and 1 more, see visor status)")
    );
    assert_eq!(h.machine.backup_status().problems.len(), 2);
    // The core's answer does not make it resolved.
    h.status(None, false);
    let error = h
        .machine
        .last_error()
        .expect("the problem is the last error")
        .clone();
    assert!(
        error.message.contains("/var/lib/zeta does not exist"),
        "{error:?}"
    );
    assert_eq!(error.resolved_at, None);
    // A reload checks again; a check without problems resolves it.
    h.at_ms(1000);
    let check = backup_checks(&h.event(Event::ConfigUnchanged))[0];
    h.event(checked_backup(check, &[]));
    assert_eq!(h.machine.status_line(), "running v1");
    assert_eq!(
        h.machine.last_error().and_then(|e| e.resolved_at),
        Some(h.now)
    );
    assert_eq!(
        h.logged(
            LogLevel::Info,
            "backup: [backup] checked, no problem found; backups will be copies"
        ),
        1
    );
}

#[test]
fn checks_of_backup_run_one_at_a_time_and_a_stale_answer_is_dropped() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let first = backup_checks(&h.event(Event::Started))[0];
    assert!(
        backup_checks(&h.event(Event::ConfigUnchanged)).is_empty(),
        "queued"
    );
    assert!(
        backup_checks(&h.event(Event::ConfigUnchanged)).is_empty(),
        "queued once"
    );
    let actions = h.event(checked_backup(first, &["backup.folder: stale"]));
    let second = backup_checks(&actions);
    assert_eq!(second.len(), 1);
    assert_eq!(h.logged(LogLevel::Error, "stale"), 0);
    assert!(h.machine.backup_status().problems.is_empty());
    h.event(checked_backup(second[0], &["backup.folder: fresh"]));
    assert_eq!(h.logged(LogLevel::Error, "fresh"), 1);
}

#[test]
fn a_switch_takes_the_backup_and_runs_the_hooks_with_reason_switch() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let check = backup_checks(&h.event(Event::Started))[0];
    h.event(checked_backup(check, &[]));
    h.status(None, false);
    control(&mut h, 1, switch("v1.0.1"));
    h.event(Event::SwitchFolderChecked {
        tag: "v1.0.1".into(),
        result: Ok(checked("v1.0.1", false)),
    });
    let actions = h.exit(Proc::Core);
    let started = backups_started(&actions);
    assert_eq!(started.len(), 1, "{actions:?}");
    let (id, order) = &started[0];
    assert_eq!(
        (order.from.as_str(), order.to.as_str(), order.reason),
        ("v1", "v1.0.1", Reason::Switch)
    );
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Progress(t)] if t.contains("backing up"))
    );
    assert_eq!(h.machine.status_line(), "switching to v1.0.1: backing up");
    let path = "/backups/v1-to-v1.0.1-switch-20260101T000000Z";
    let actions = h.event(backup_done(*id, path));
    let before = hooks_run(&actions);
    assert_eq!(before.len(), 1, "{actions:?}");
    for (key, value) in [
        ("VISOR_EVENT", "beforeSwitch"),
        ("VISOR_REASON", "switch"),
        ("VISOR_RELEASE", "v1.0.1"),
        ("VISOR_FROM", "v1"),
        ("VISOR_FOLDER", "/h/v1.0.1"),
        ("VISOR_BACKUP", path),
    ] {
        assert_eq!(env_of(&before[0].2, key), value, "{key}");
    }
    assert!(!before[0].2.iter().any(|(k, _)| k == "VISOR_HEIGHT"));
    let actions = h.event(hook_done(before[0].0, HookKind::BeforeSwitch, Ok(())));
    assert_eq!(actions[0], switch_to("v1.0.1"));
    let actions = h.status(None, false);
    assert!(matches!(&replies(&actions)[..], [ControlReply::Done(_)]));
    let after = hooks_run(&actions);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1, HookKind::AfterUpgrade);
    assert_eq!(env_of(&after[0].2, "VISOR_REASON"), "switch");
    assert_eq!(env_of(&after[0].2, "VISOR_FROM"), "v1");
    assert_eq!(env_of(&after[0].2, "VISOR_RELEASE"), "v1.0.1");
    assert_eq!(env_of(&after[0].2, "VISOR_BACKUP"), path);
    assert!(!after[0].2.iter().any(|(k, _)| k == "VISOR_HEIGHT"));
    assert_eq!(h.machine.upgrades(), 0, "a switch is not an upgrade");
}

/// Stops v1 for a switch to v1.0.1 with `config`; the actions of the stop's end.
fn switch_to_stopped(h: &mut Harness) -> Vec<Action> {
    h.event(Event::Started);
    h.status(None, false);
    control(h, 1, switch("v1.0.1"));
    h.event(Event::SwitchFolderChecked {
        tag: "v1.0.1".into(),
        result: Ok(checked("v1.0.1", false)),
    });
    h.exit(Proc::Core)
}

#[test]
fn a_failed_backup_or_before_switch_at_a_switch_starts_the_old_version_again() {
    // The backup fails, onFailure = "stop": abandoned.
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let id = backups_started(&switch_to_stopped(&mut h))[0].0;
    let actions = h.event(backup_failed(id));
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Failed(t)] if t.contains("not switched to v1.0.1: the backup failed") && t.contains("v1 was started again")),
        "{actions:?}"
    );
    assert_eq!(spawned(&actions)[0].1, strings(&["start", "--home", "/z"]));
    assert!(
        hooks_run(&actions).is_empty(),
        "no beforeSwitch after a failed backup"
    );
    assert_eq!(h.machine.running_release(), "v1");
    assert_eq!(h.machine.phase(), Phase::Running);
    // onFailure = "continue": on without a backup, then beforeSwitch fails: abandoned.
    let mut h = Harness::new(backup_config(OnFailure::Continue), false);
    let id = backups_started(&switch_to_stopped(&mut h))[0].0;
    let actions = h.event(backup_failed(id));
    let before = hooks_run(&actions);
    assert_eq!(before.len(), 1, "{actions:?}");
    assert!(!before[0].2.iter().any(|(k, _)| k == "VISOR_BACKUP"));
    let actions = h.event(hook_done(
        before[0].0,
        HookKind::BeforeSwitch,
        Err("exit status 3".into()),
    ));
    assert!(
        matches!(&replies(&actions)[..], [ControlReply::Failed(t)] if t.contains("the beforeSwitch hook failed (exit status 3)")),
        "{actions:?}"
    );
    assert_eq!(spawned(&actions).len(), 1, "v1 started again");
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::SwitchCurrent { .. })));
    assert_eq!(
        h.logged(
            LogLevel::Error,
            "the switch is abandoned and v1 is started again"
        ),
        1
    );
    // Without [backup] and hooks, the switch is as before.
    let mut h = Harness::new(fast_config(), false);
    let actions = switch_to_stopped(&mut h);
    assert_eq!(actions[0], switch_to("v1.0.1"));
}

#[test]
fn a_stop_during_a_switch_backup_cancels_it_and_fails_the_request() {
    let mut h = Harness::new(backup_config(OnFailure::Stop), false);
    let id = backups_started(&switch_to_stopped(&mut h))[0].0;
    let actions = h.event(Event::SignalReceived(ReceivedSignal::Term));
    assert!(actions.contains(&Action::CancelBackup { id }));
    assert!(actions.contains(&Action::Exit(0)));
    assert!(matches!(&replies(&actions)[..], [ControlReply::Failed(t)] if t.contains("SIGTERM")));
}
