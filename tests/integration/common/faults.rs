//! Shared by the fault-injection tests: a seedable random source for kill moments (seeded
//! with [`super::seed`]), an incremental reader of the simulator's record, and the checks of HOME after a kill.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use zeta_visor::config::run_config::RunConfig;

use super::{Env, Record};

/// xorshift64*: small, seedable and good enough to spread kill moments.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// The simulator's record, read incrementally: only what was appended since the last call is
/// parsed, so polling stays cheap however long a campaign runs.
pub struct RecordReader {
    path: PathBuf,
    offset: u64,
    partial: String,
    records: Vec<Record>,
}

impl RecordReader {
    pub fn new(env: &Env) -> RecordReader {
        RecordReader {
            path: env.record_file(),
            offset: 0,
            partial: String::new(),
            records: Vec::new(),
        }
    }

    /// Reads what was appended and returns every record so far.
    pub fn refresh(&mut self) -> &[Record] {
        if let Ok(mut file) = fs::File::open(&self.path) {
            let mut more = String::new();
            if file.seek(SeekFrom::Start(self.offset)).is_ok()
                && file.read_to_string(&mut more).is_ok()
            {
                self.offset += more.len() as u64;
                self.partial.push_str(&more);
                while let Some(end) = self.partial.find('\n') {
                    let line: String = self.partial.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_str(&line) {
                        self.records.push(Record(value));
                    }
                }
            }
        }
        &self.records
    }

    /// Pid and mode of every simulator process recorded from record `from` on.
    pub fn pids_since(&mut self, from: usize) -> Vec<(u32, String)> {
        self.refresh()
            .iter()
            .skip(from)
            .filter(|r| r.event() == "start")
            .map(|r| (r.pid(), r.mode().to_string()))
            .collect()
    }

    /// The core start records from record `from` on.
    /// Waits for the core of `version` to start after record `from`, and checks it starts
    /// from the upgrade block `height` (`--snapshot.load-from-block-height`).
    pub fn wait_upgrade_from_its_block(
        &mut self,
        version: &str,
        height: u64,
        from: usize,
        context: &str,
    ) {
        let upgraded = super::wait_for(
            &format!("{context}: upgrade to {version} after restart"),
            super::DEADLINE,
            || {
                self.core_starts_since(from)
                    .into_iter()
                    .find(|r| r.version() == version)
            },
        );
        assert!(
            upgraded.args().ends_with(&[
                "--snapshot.load-from-block-height".to_string(),
                height.to_string()
            ]),
            "{context}: the upgrade after the restart starts from the upgrade block: {:?}",
            upgraded.args()
        );
    }

    pub fn core_starts_since(&mut self, from: usize) -> Vec<Record> {
        self.refresh()
            .iter()
            .skip(from)
            .filter(|r| r.event() == "start" && r.mode() == "core")
            .cloned()
            .collect()
    }
}

/// The run-config `current` points at; panics if the link or the file is broken.
pub fn current_run_config(home: &Path) -> RunConfig {
    let target = fs::read_link(home.join("current")).expect("current is a link");
    let folder = home.join(target);
    RunConfig::load(&folder.join("run-config.toml"))
        .unwrap_or_else(|e| panic!("current points at {folder:?} with a bad run-config: {e:?}"))
}

/// `.visor-tmp-*` entries in HOME not made by the Visor with pid `fresh`.
pub fn temp_leftovers(home: &Path, fresh: Option<i32>) -> Vec<String> {
    fs::read_dir(home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".visor-tmp-"))
        .filter(|name| fresh.is_none_or(|pid| !name.contains(&format!("-{pid}-"))))
        .collect()
}
