//! The fault suite's shared parts: how many trials a scenario runs (a
//! bounded number under `make test`, the full number under `make faults`),
//! a seeded random source so a failing trial can be replayed, and the
//! per-scenario report (trials, survived, data lost, leftovers, time to
//! recover) that `make faults` prints as a table.
//!
//! `BERTH_FAULTS=full` selects the full counts; `BERTH_FAULT_SEED=N` replays
//! a run (every scenario prints its seed when it starts).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

/// The seed used when `BERTH_FAULT_SEED` is not set: fixed, so `make
/// test` tries the same points every run.
const DEFAULT_SEED: u64 = 20_261_206;

/// True under `make faults` (`BERTH_FAULTS=full`).
pub fn full() -> bool {
    std::env::var("BERTH_FAULTS").is_ok_and(|v| v == "full")
}

/// `bounded` trials under `make test`, `full` under `make faults`.
pub fn trials(bounded: usize, full_count: usize) -> usize {
    if full() { full_count } else { bounded }
}

/// The suite's seed: `BERTH_FAULT_SEED`, else a fixed default.
pub fn seed() -> u64 {
    std::env::var("BERTH_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// A reproducible random source for one scenario: the suite's seed mixed
/// with the scenario's name, so scenarios do not share their draws.
pub struct Draws(Pcg64);

impl Draws {
    /// The draws of `scenario` for this run's seed (printed, to replay it).
    pub fn for_scenario(scenario: &str) -> Draws {
        let seed = seed();
        eprintln!("fault scenario {scenario}: BERTH_FAULT_SEED={seed}");
        let mixed = scenario
            .bytes()
            .fold(seed, |h, b| h.rotate_left(5) ^ u64::from(b));
        Draws(Pcg64::seed_from_u64(mixed))
    }

    /// A duration drawn uniformly from `from..to`.
    pub fn between(&mut self, from: Duration, to: Duration) -> Duration {
        let millis = self
            .0
            .random_range(from.as_millis() as u64..to.as_millis() as u64);
        Duration::from_millis(millis)
    }

    /// An index drawn uniformly from `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }
}

/// How one trial went.
#[derive(Debug, Clone, Default)]
pub struct Trial {
    /// The environment came back to a consistent state and the next
    /// command succeeded.
    pub survived: bool,
    /// Release records lost or duplicated, objects lost: must be 0.
    pub data_lost: usize,
    /// Jobs, run pods, partial objects, locks or `in_progress` records
    /// left behind once recovered: must be 0.
    pub leftovers: usize,
    /// From the fault to the environment being consistent again.
    pub recovered_in: Duration,
    /// What went wrong, for the failure message.
    pub notes: Vec<String>,
}

/// The report of one scenario: its trials, summed up.
#[derive(Debug)]
pub struct Scenario {
    name: String,
    trials: Vec<Trial>,
}

impl Scenario {
    /// An empty report for `name` (e.g. `sigkill deploy`).
    pub fn new(name: &str) -> Scenario {
        Scenario {
            name: name.to_string(),
            trials: Vec::new(),
        }
    }

    /// Add a trial's outcome.
    pub fn record(&mut self, trial: Trial) {
        self.trials.push(trial);
    }

    /// Write the scenario's line to the report `make faults` prints
    /// (`target/tmp/faults/report.tsv`), then fail the test unless every
    /// trial survived with no data lost and no leftovers.
    pub fn finish(self) {
        finish_all(vec![self]);
    }

    /// Write the scenario's line to the report; its failed trials, each a
    /// line (none: it passed).
    fn write(&self) -> Vec<String> {
        let survived = self.trials.iter().filter(|t| t.survived).count();
        let lost: usize = self.trials.iter().map(|t| t.data_lost).sum();
        let leftovers: usize = self.trials.iter().map(|t| t.leftovers).sum();
        let mut recovered: Vec<f64> = self
            .trials
            .iter()
            .map(|t| t.recovered_in.as_secs_f64())
            .collect();
        recovered.sort_by(f64::total_cmp);
        let median = recovered.get(recovered.len() / 2).copied().unwrap_or(0.0);
        let max = recovered.last().copied().unwrap_or(0.0);
        let line = format!(
            "{}\t{}\t{survived}\t{lost}\t{leftovers}\t{median:.1}\t{max:.1}\t{}\n",
            self.name,
            self.trials.len(),
            seed()
        );
        let path = report_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap();
        eprint!("fault report: {line}");
        let mut failed: Vec<String> = self
            .trials
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.survived || t.data_lost > 0 || t.leftovers > 0)
            .map(|(i, t)| format!("{} trial {i}: {}", self.name, t.notes.join("; ")))
            .collect();
        if self.trials.is_empty() {
            failed.push(format!("{}: no trial ran", self.name));
        }
        failed
    }
}

/// Write every one of `scenarios`' lines to the report (one test may run
/// several, e.g. one per signal), then fail the test unless every trial of
/// every one survived with no data lost and no leftovers.
pub fn finish_all(scenarios: Vec<Scenario>) {
    let trials: usize = scenarios.iter().map(|s| s.trials.len()).sum();
    let failed: Vec<String> = scenarios.iter().flat_map(Scenario::write).collect();
    assert!(
        failed.is_empty(),
        "{} of {trials} trials failed (seed {}):\n{}",
        failed.len(),
        seed(),
        failed.join("\n")
    );
}

/// Where the scenarios' lines go: `target/tmp/faults/report.tsv`.
pub fn report_path() -> PathBuf {
    super::repo_root().join("target/tmp/faults/report.tsv")
}
